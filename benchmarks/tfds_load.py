"""TFDS split loading: record by record (the loader before issue 14) vs batched reads.

    .venv/bin/python benchmarks/tfds_load.py            # -> tfds_load.json
    .venv/bin/python benchmarks/tfds_load.py --quick    # 5,000-example splits

Two sources, each a 50,000-example CIFAR-10-shaped train split (32x32x3) and a 100,000-example
split of 64x64x3 images (Tiny-ImageNet's image shape; jaxunlearn reads Tiny-ImageNet itself
from an image folder):

* ``mock``: ``tfds.testing.mock_data`` (the issue's protocol). The mock generates each
  example in Python when it is read, so every reader pays that per-example cost;
  ``mock_floor`` times the generator alone, and ``reader - floor`` is the reader's own overhead.
* ``files``: a prepared dataset on disk, as ``tfds build --file_format array_record`` leaves
  it: PNG-encoded images and int labels serialised as ``tf.train.Example`` records in
  ArrayRecord files, written here by a small ``GeneratorBasedBuilder`` (no TensorFlow: the
  images are handed to TFDS already PNG-encoded by Pillow). The images are smooth random
  fields (a 4x-upsampled random image plus +-6 noise): ~2.3 KB per 32x32 PNG, like CIFAR-10's
  (~2.2 KB). This is what ``jaxunlearn.data`` reads on a real machine: the per-record cost is
  the ArrayRecord read, the proto parse and the PNG decode.

Readers, interleaved over the rounds:

* ``record_by_record``: the old ``jaxunlearn.data._load_tfds`` body, ``[src[i] for i in
  range(len(src))]`` then ``np.stack`` of the images;
* ``batched``: ``jaxunlearn.data._read_split`` (``__getitems__`` of 4096 records, written
  into preallocated arrays).

The mock's ``__getitems__`` is patched (tensorflow-datasets 4.9 calls it without its
``self``; see tests/test_data.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import common  # noqa: E402


def record_by_record(src):
    recs = [src[i] for i in range(len(src))]
    images = np.stack([np.asarray(r["image"], np.uint8) for r in recs])
    labels = np.asarray([int(r["label"]) for r in recs], np.int32)
    return images, labels


def batched(src):
    from jaxunlearn import data
    return data._read_split(src)


_BUILDERS: dict = {}


def synth_name(shape) -> str:
    return "synth" + "x".join(map(str, shape))


def build_files(data_dir: str, n: int, shape) -> None:
    """Writes a TFDS dataset ``synth_name(shape)`` (``n`` train examples, PNG) as ArrayRecord."""
    import io

    import PIL.Image
    import tensorflow_datasets as tfds

    shape = tuple(shape)
    if shape not in _BUILDERS:  # a builder class registers its name once per process
        def generate(self):
            rng = np.random.default_rng(0)
            h, c = shape[0], shape[2]
            for i in range(self.num_examples):
                low = rng.integers(0, 256, (h // 4, h // 4, c)).astype(np.uint8)
                img = np.asarray(PIL.Image.fromarray(low).resize((h, h), PIL.Image.BILINEAR), np.int16)
                img = np.clip(img + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                PIL.Image.fromarray(img).save(buf, format="png")
                yield i, {"image": buf.getvalue(), "label": i % 10}

        _BUILDERS[shape] = type(synth_name(shape), (tfds.core.GeneratorBasedBuilder,), {
            "VERSION": tfds.core.Version("1.0.0"),
            "_info": lambda self: tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=shape), "label": tfds.features.ClassLabel(num_classes=10)})),
            "_split_generators": lambda self, dl_manager: {"train": self._generate_examples()},
            "_generate_examples": generate,
        })
    builder = _BUILDERS[shape](data_dir=data_dir, file_format="array_record")
    builder.num_examples = n
    builder.download_and_prepare()


def measure(name: str, source: str, n: int, shape, src, readers: dict, repeats: int) -> dict:
    """Interleaved timed rounds of ``readers`` on ``src``; a row of the JSON."""
    times = {k: [] for k in readers}
    for r in range(repeats):
        order = list(readers)[r % len(readers):] + list(readers)[:r % len(readers)]
        for k in order:
            t0 = time.perf_counter()
            res = readers[k](src)
            times[k].append(time.perf_counter() - t0)
            if k != "mock_floor":
                assert res[0].shape == (n, *shape) and res[0].dtype == np.uint8, res[0].shape
            del res
            print(f"  {name} ({source}) round {r} {k:17s} {times[k][-1]:7.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {"dataset": name, "source": source,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join([".venv/bin/python", "benchmarks/tfds_load.py", *sys.argv[1:]]), "num_examples": n, "image_shape": shape,
           "examples_per_s": {k: n / v for k, v in med.items()}, "median_s": med, "samples_s": times,
           "speedup_batched_vs_record_by_record": med["record_by_record"] / med["batched"],
           "loadavg": os.getloadavg()}
    if "mock_floor" in med:
        row["reader_overhead_s"] = {k: med[k] - med["mock_floor"] for k in ("record_by_record", "batched")}
    print(json.dumps({k: row[k] for k in ("dataset", "source", "examples_per_s",
                                          "speedup_batched_vs_record_by_record")}), flush=True)
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "tfds_load.json"))
    p.add_argument("--sources", default="mock,files", help="comma-separated: mock, files (default both)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of the sources not measured now from the existing --out file")
    a = p.parse_args()
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing import mocking

    mocking._getitems = lambda record_keys, generator, serialized=False: [generator[k] for k in record_keys]
    scale = 10 if a.quick else 1
    splits = [("cifar10", 50_000 // scale, (32, 32, 3)), ("imagenet_resized/64x64", 100_000 // scale, (64, 64, 3))]
    out = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join([".venv/bin/python", "benchmarks/tfds_load.py", *sys.argv[1:]]),
           "machine": common.machine(), "splits": []}
    sources = a.sources.split(",")
    for name, n, shape in splits:
        if "mock" in sources:
            with tempfile.TemporaryDirectory() as tmp, tfds.testing.mock_data(num_examples=n):
                src = tfds.data_source(name, split="train", data_dir=tmp, download=False)
                gen = src.data_source._generator
                out["splits"].append(measure(name, "mock", n, shape, src, {
                    "record_by_record": record_by_record, "batched": batched,
                    "mock_floor": lambda s: [gen[k] for k in range(len(s))]}, a.repeats))
        if "files" in sources:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                build_files(tmp, n, shape)
                print(f"  {name} (files): wrote {n:,} PNG records in {time.perf_counter() - t0:.0f} s", flush=True)
                src = tfds.data_source(synth_name(shape), split="train", data_dir=tmp, download=False)
                out["splits"].append(measure(name, "files", n, shape, src, {
                    "record_by_record": record_by_record, "batched": batched}, a.repeats))
    if a.merge and pathlib.Path(a.out).is_file():
        old = json.loads(pathlib.Path(a.out).read_text())
        # rows written before rows carried their own source / date / command: mock rows of that run
        rows = [{"source": "mock", "date": old["date"], "command": old["command"], **r} for r in old["splits"]]
        out["splits"] = [r for r in rows if r["source"] not in sources] + out["splits"]
    pathlib.Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
