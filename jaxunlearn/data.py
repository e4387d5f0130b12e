"""Datasets as arrays, forget/retain specifications, and in-jit batching and augmentation.

A dataset is a :class:`Dataset`: uint8 images ``[N, H, W, C]`` and int32 labels ``[N]`` for
the train, validation and test splits, plus the per-channel normalisation to apply.
Normalisation: ``x = (image / 255 - mean) / std`` per channel (see :func:`normalize`).

Sources:
  * ``digits``: scikit-learn's 8x8 handwritten digits (always available offline). Pixel
    values 0..16 are scaled to 0..255. A stratified 20 % test split (seed 0).
  * ``fashion_mnist``: the four gzipped IDX files, from ``--data-dir`` or
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``), else TFDS.
  * ``mnist``, ``cifar10``, ``cifar100``: TFDS prepared data through ``tfds.data_source``.
  * ``tiny_imagenet``: an image-folder directory (``train/<wnid>/images/*.JPEG`` and
    ``val/images`` + ``val/val_annotations.txt``, the standard archive layout).

Missing data never triggers a download: loaders raise :class:`DataNotFoundError` within
seconds, naming where they looked and how to get the data.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import struct
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset is not present locally (no download is ever attempted)."""


class Dataset(NamedTuple):
    """Arrays of one dataset. Images are uint8 ``[N, H, W, C]``, labels int32 ``[N]``."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


# Per-channel normalisation constants (fractions of 255).
NORMALISATION = {
    "digits": ((0.30,), (0.38,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.491, 0.482, 0.447), (0.247, 0.243, 0.262)),
    "cifar100": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
    "tiny_imagenet": ((0.480, 0.448, 0.398), (0.277, 0.269, 0.282)),
}
NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100,
               "tiny_imagenet": 200}
DATASETS = tuple(NUM_CLASSES)
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")


# ----------------------------------------------------------------------------- loaders

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads a (gzipped) IDX file into a uint8 array; raises ValueError if it is malformed."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header names {ndim} dimensions but ends early")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def _digits_arrays():
    """scikit-learn's 8x8 digits: ``(images float64 [1797, 8, 8] in 0..16, labels [1797])``.

    Read straight from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``,
    what ``load_digits`` parses), without importing ``sklearn.datasets`` (~1.2 s of every
    digits command's start-up on the 2-core CPU); ``load_digits`` if the file is not there.
    """
    import importlib.util
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = pathlib.Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images, d.target


def _load_digits():
    raw_images, raw_labels = _digits_arrays()
    images = np.clip(raw_images * 16, 0, 255).astype(np.uint8)[..., None]
    labels = raw_labels.astype(np.int32)
    rng = np.random.default_rng(0)
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        test_idx.append(rng.permutation(idx)[: round(0.2 * len(idx))])
    test = np.zeros(len(labels), bool)
    test[np.concatenate(test_idx)] = True
    return images[~test], labels[~test], images[test], labels[test]


def _load_fashion_mnist(data_dir):
    candidates = [pathlib.Path(data_dir)] if data_dir else [pathlib.Path(p) for p in FASHION_MNIST_DIRS]
    if data_dir:
        candidates += [pathlib.Path(data_dir) / "fashion-mnist", pathlib.Path(data_dir) / "fashion_mnist"]
    for d in candidates:
        if all((d / f).is_file() for f in FASHION_MNIST_FILES.values()):
            arr = {k: read_idx(d / f) for k, f in FASHION_MNIST_FILES.items()}
            for split in ("train", "test"):
                x, y = arr[f"{split}_images"], arr[f"{split}_labels"]
                if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                    raise ValueError(f"Fashion-MNIST files in {d} do not match: {split} images {x.shape}, "
                                     f"labels {y.shape} (expected [N, 28, 28] and [N])")
                if y.size and y.max() >= NUM_CLASSES["fashion_mnist"]:
                    raise ValueError(f"Fashion-MNIST {split} labels in {d} go up to {int(y.max())}; expected 0..9")
            return (arr["train_images"][..., None], arr["train_labels"].astype(np.int32),
                    arr["test_images"][..., None], arr["test_labels"].astype(np.int32))
    if data_dir and _tfds_prepared("fashion_mnist", data_dir):
        return _load_tfds("fashion_mnist", data_dir)
    raise DataNotFoundError(
        "Fashion-MNIST not found: looked for " + ", ".join(FASHION_MNIST_FILES.values())
        + " in " + ", ".join(str(c) for c in candidates)
        + (" and for TFDS prepared data" if data_dir else "")
        + ". Install Debian's package (apt-get install dataset-fashion-mnist) or pass --data-dir "
        "pointing at the four IDX .gz files or a TFDS data_dir.")


def _tfds_prepared(name: str, data_dir) -> bool:
    if not data_dir:
        return False
    root = pathlib.Path(data_dir) / name
    return root.is_dir() and any(root.glob("*/dataset_info.json"))


#: records read per ``__getitems__`` call when loading a TFDS split
TFDS_READ_BATCH = 4096


def _read_split(src, batch: int = TFDS_READ_BATCH):
    """All records of a TFDS data source as ``(images uint8 [N, H, W, C], labels int32 [N])``.

    Reads ``batch`` records per call through the source's batched ``__getitems__`` (ArrayRecord
    reads a batch's records in parallel) and writes them straight into preallocated arrays
    (no list of N records, no ``np.stack`` copy). Sources without ``__getitems__`` are read
    one record at a time.
    """
    n = len(src)
    getitems = getattr(src, "__getitems__", None)
    images = labels = None
    for start in range(0, n, batch):
        keys = list(range(start, min(start + batch, n)))
        recs = getitems(keys) if getitems is not None else [src[i] for i in keys]
        if images is None:
            first = np.asarray(recs[0]["image"], np.uint8)
            images = np.empty((n, *first.shape), np.uint8)
            labels = np.empty(n, np.int32)
        for j, r in enumerate(recs):
            images[start + j] = r["image"]
            labels[start + j] = r["label"]
    if images is None:
        return np.zeros((0, 1, 1, 1), np.uint8), np.zeros(0, np.int32)
    return images, labels


def _load_tfds(name: str, data_dir):
    """Reads prepared TFDS data with ``tfds.data_source`` (no TensorFlow, never downloads)."""
    import tensorflow_datasets as tfds
    tfds_name = {"fashion_mnist": "fashion_mnist"}.get(name, name)
    out = []
    for split in ("train", "test"):
        try:
            src = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
            images, labels = _read_split(src)
        except Exception as e:  # noqa: BLE001 - any TFDS failure means "not prepared here"
            where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
            raise DataNotFoundError(
                f"{name}: no prepared TFDS data in {where} ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
                f"Prepare it with `tfds build {tfds_name} --data_dir DIR --file_format array_record` on "
                "a machine with network access, copy DIR here and pass --data-dir DIR; jaxunlearn "
                "never downloads.") from None
        out += [images, labels]
    return tuple(out)


def _load_tiny_imagenet(data_dir):
    root = pathlib.Path(data_dir or "")
    if not data_dir or not (root / "train").is_dir():
        raise DataNotFoundError(
            f"Tiny-ImageNet not found under {root / 'train' if data_dir else '(no --data-dir)'}: pass "
            "--data-dir pointing at the extracted tiny-imagenet-200 folder (train/, val/).")
    from PIL import Image
    wnids = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    index = {w: i for i, w in enumerate(wnids)}

    def read(paths):
        return np.stack([np.asarray(Image.open(p).convert("RGB"), np.uint8) for p in paths])

    tr_paths, tr_labels = [], []
    for w in wnids:
        for p in sorted((root / "train" / w).rglob("*.JPEG")):
            tr_paths.append(p)
            tr_labels.append(index[w])
    te_paths, te_labels = [], []
    ann = root / "val" / "val_annotations.txt"
    if ann.is_file():
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in index:
                te_paths.append(root / "val" / "images" / parts[0])
                te_labels.append(index[parts[1]])
    return (read(tr_paths), np.asarray(tr_labels, np.int32), read(te_paths),
            np.asarray(te_labels, np.int32))


def load_dataset(name: str, data_dir: str | None = None, val_fraction: float = 0.1,
                 seed: int = 0, max_train: int | None = None) -> Dataset:
    """Loads a dataset into memory.

    Args:
      name: one of :data:`DATASETS`.
      data_dir: where to look first (IDX files, a TFDS ``data_dir`` or an image folder).
      val_fraction: fraction of the training split held out (stratified) for validation and
        early stopping.
      seed: seed of the validation split.
      max_train: keep at most this many training samples (stratified), for quick runs.

    Returns:
      A :class:`Dataset`.

    Raises:
      ValueError: unknown dataset name or bad fraction.
      DataNotFoundError: the data is not present locally.
    """
    if name not in NUM_CLASSES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if name == "digits":
        arrays = _load_digits()
    elif name == "fashion_mnist":
        arrays = _load_fashion_mnist(data_dir)
    elif name == "tiny_imagenet":
        arrays = _load_tiny_imagenet(data_dir)
    else:
        arrays = _load_tfds(name, data_dir)
    tr_x, tr_y, te_x, te_y = arrays
    if tr_x.ndim == 3:
        tr_x, te_x = tr_x[..., None], te_x[..., None]
    rng = np.random.default_rng(seed)
    if max_train is not None and max_train < len(tr_y):
        keep = np.sort(_stratified_take(tr_y, max_train / len(tr_y), rng))
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    val = np.zeros(len(tr_y), bool)
    if val_fraction > 0:
        val[_stratified_take(tr_y, val_fraction, rng)] = True
    mean, std = NORMALISATION[name]
    return Dataset(name, tr_x[~val], tr_y[~val], tr_x[val], tr_y[val], te_x, te_y,
                   NUM_CLASSES[name], mean, std)


def whole_training_set(ds: Dataset) -> Dataset:
    """``ds`` with its validation split put back into the training split (appended, so the
    training rows keep their indices) and an empty validation split.

    The authors hold 10 % of the training split out only while pre-training (and CMF
    fine-tuning) select their best epoch; unlearning, the probes' training features, NCC and
    CMF class means use the whole training split (docs/parity.md, row 10). Training commands
    use :func:`load_dataset`'s split; unlearning and evaluation use this view of it.
    """
    if not len(ds.val_labels):
        return ds
    return ds._replace(train_images=np.concatenate([ds.train_images, ds.val_images]),
                       train_labels=np.concatenate([ds.train_labels, ds.val_labels]),
                       val_images=ds.val_images[:0], val_labels=ds.val_labels[:0])


def _stratified_take(labels, fraction, rng):
    idx = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        idx.append(rng.permutation(members)[: int(round(fraction * len(members)))])
    return np.concatenate(idx)


# ----------------------------------------------------------------------------- forget sets

class ForgetSpec(NamedTuple):
    """What to forget: whole classes, or a random fraction of training samples.

    Exactly one of ``classes`` (a tuple of class ids) or ``fraction`` (in (0, 1)) is set.
    """

    classes: tuple[int, ...] = ()
    fraction: float | None = None
    seed: int = 0

    def describe(self) -> str:
        if self.fraction is not None:
            return f"random {self.fraction:g} of training samples (seed {self.seed})"
        return "classes " + ",".join(map(str, self.classes))


def parse_forget(text: str | Sequence[int] | ForgetSpec, num_classes: int, seed: int = 0) -> ForgetSpec:
    """Parses ``"3"``, ``"0,5,9"`` or ``"0.1"`` (a fraction of random samples) into a spec.

    Raises:
      ValueError: malformed list, class outside ``[0, num_classes)``, every class forgotten,
        an empty forget set or a fraction outside (0, 1).
    """
    if isinstance(text, ForgetSpec):
        spec = text
    elif isinstance(text, str):
        t = text.strip()
        if not t:
            raise ValueError("empty forget set: give a class, a comma list of classes, or a fraction")
        if "." in t and "," not in t:
            try:
                frac = float(t)
            except ValueError:
                raise ValueError(f"malformed forget spec {text!r}: expected e.g. 3, 0,5,9 or 0.1") from None
            spec = ForgetSpec((), frac, seed)
        else:
            try:
                classes = tuple(int(p) for p in t.split(","))
            except ValueError:
                raise ValueError(f"malformed forget list {text!r}: expected class ids like 3 or 0,5,9") from None
            spec = ForgetSpec(classes, None, seed)
    else:
        spec = ForgetSpec(tuple(int(c) for c in text), None, seed)
    if spec.fraction is not None:
        if not 0.0 < spec.fraction < 1.0:
            raise ValueError(f"forget fraction must be in (0, 1), got {spec.fraction}")
        return spec
    if not spec.classes:
        raise ValueError("empty forget set: name at least one class")
    bad = [c for c in spec.classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"forget class {bad[0]} is outside the dataset's classes 0..{num_classes - 1}")
    classes = tuple(sorted(set(spec.classes)))
    if len(classes) >= num_classes:
        raise ValueError("cannot forget every class: at least one class must be retained")
    return ForgetSpec(classes, None, spec.seed)


class ForgetSplit(NamedTuple):
    """Index sets of one forget specification (int arrays into the split's arrays)."""

    train_forget: np.ndarray
    train_retain: np.ndarray
    test_forget: np.ndarray
    test_retain: np.ndarray
    forget_classes: np.ndarray  # [F] class ids (empty for sample forgetting)


def forget_split(ds: Dataset, spec: ForgetSpec) -> ForgetSplit:
    """Retain/forget indices of the train and test splits for ``spec``.

    Class forgetting: a sample is forgotten iff its label is a forget class. Sample
    forgetting: a random ``fraction`` of training samples; the test split has no forget
    samples, and all test samples count as retain.
    """
    if spec.fraction is not None:
        rng = np.random.default_rng(spec.seed)
        n = len(ds.train_labels)
        f = np.sort(rng.permutation(n)[: max(1, int(round(spec.fraction * n)))])
        r = np.setdiff1d(np.arange(n), f)
        return ForgetSplit(f, r, np.zeros(0, np.int64), np.arange(len(ds.test_labels)),
                           np.zeros(0, np.int32))
    fc = np.asarray(spec.classes, np.int32)
    tr_f = np.isin(ds.train_labels, fc)
    te_f = np.isin(ds.test_labels, fc)
    if not tr_f.any():
        raise ValueError(f"forget set is empty: no training sample has class {spec.describe()}")
    return ForgetSplit(np.flatnonzero(tr_f), np.flatnonzero(~tr_f), np.flatnonzero(te_f),
                       np.flatnonzero(~te_f), fc)


# ----------------------------------------------------------------------------- in-jit ops

def normalize(images: jax.Array, mean: Sequence[float] | None, std: Sequence[float] | None) -> jax.Array:
    """uint8 ``[B, H, W, C]`` -> float32 normalised ``[B, H, W, C]``.

    ``mean`` and ``std`` None: no normalisation, the inputs cast to float32 (float data that
    is already what the model reads).
    """
    if mean is None and std is None:
        return images.astype(jnp.float32)
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def augment(key: jax.Array, images: jax.Array, pad: int = 4, flip: bool = True) -> jax.Array:
    """Random crop with zero padding and random horizontal flip, per sample, inside jit.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]`` (any dtype).
      pad: padding in pixels on each side before cropping back to ``H x W``.
      flip: whether to flip horizontally with probability 1/2.

    Returns:
      ``[B, H, W, C]`` augmented images, same dtype.
    """
    b, h, w, _ = images.shape
    k_crop, k_flip = jax.random.split(key)
    if pad > 0:
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * pad + 1)
        images = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1])))(
            padded, offsets)
    if flip:
        do = jax.random.bernoulli(k_flip, 0.5, (b,))
        images = jnp.where(do[:, None, None, None], images[:, :, ::-1, :], images)
    return images
