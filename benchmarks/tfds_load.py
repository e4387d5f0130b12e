"""TFDS split loading: record by record (the loader before issue 14) vs batched reads.

    .venv/bin/python benchmarks/tfds_load.py            # -> tfds_load.json
    .venv/bin/python benchmarks/tfds_load.py --quick    # 5,000-example splits

Both splits come from ``tfds.testing.mock_data`` (no real data on this machine): a
50,000-example CIFAR-10 train split (32x32x3) and a 100,000-example split of 64x64x3 images
(``imagenet_resized/64x64``, Tiny-ImageNet's image shape; jaxunlearn reads Tiny-ImageNet
itself from an image folder). Three readers, interleaved over the rounds:

* ``record_by_record``: the old ``jaxunlearn.data._load_tfds`` body, ``[src[i] for i in
  range(len(src))]`` then ``np.stack`` of the images;
* ``batched``: ``jaxunlearn.data._read_split`` (``__getitems__`` of 4096 records, written
  into preallocated arrays);
* ``mock_floor``: the mock's own example generator for every key, nothing else: under the
  mock every reader pays this per-example cost, so ``reader - floor`` is the reader's own
  overhead. On real ArrayRecord data the per-record cost is a file read + deserialisation
  instead, which ``__getitems__`` reads in parallel.

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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "tfds_load.json"))
    a = p.parse_args()
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing import mocking

    mocking._getitems = lambda record_keys, generator, serialized=False: [generator[k] for k in record_keys]
    scale = 10 if a.quick else 1
    splits = [("cifar10", 50_000 // scale, (32, 32, 3)), ("imagenet_resized/64x64", 100_000 // scale, (64, 64, 3))]
    out = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join([".venv/bin/python", "benchmarks/tfds_load.py", *sys.argv[1:]]),
           "machine": common.machine(), "splits": []}
    for name, n, shape in splits:
        with tempfile.TemporaryDirectory() as tmp, tfds.testing.mock_data(num_examples=n):
            src = tfds.data_source(name, split="train", data_dir=tmp, download=False)
            gen = src.data_source._generator
            readers = {"record_by_record": record_by_record, "batched": batched,
                       "mock_floor": lambda s: [gen[k] for k in range(len(s))]}
            times = {k: [] for k in readers}
            rss_before = common.peak_rss_mib()
            for r in range(a.repeats):
                order = list(readers)[r % 3:] + list(readers)[:r % 3]
                for k in order:
                    t0 = time.perf_counter()
                    res = readers[k](src)
                    times[k].append(time.perf_counter() - t0)
                    if k != "mock_floor":
                        assert res[0].shape == (n, *shape) and res[0].dtype == np.uint8, res[0].shape
                    del res
                    print(f"  {name} round {r} {k:17s} {times[k][-1]:7.1f} s", flush=True)
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"dataset": name, "num_examples": n, "image_shape": shape,
                   "examples_per_s": {k: n / v for k, v in med.items()}, "median_s": med, "samples_s": times,
                   "speedup_batched_vs_record_by_record": med["record_by_record"] / med["batched"],
                   "reader_overhead_s": {k: med[k] - med["mock_floor"] for k in ("record_by_record", "batched")},
                   "loadavg": os.getloadavg()}
            out["splits"].append(row)
            print(json.dumps({k: row[k] for k in ("dataset", "examples_per_s", "speedup_batched_vs_record_by_record")}))
    pathlib.Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
