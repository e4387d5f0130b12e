import gzip
import os
import pathlib
import struct
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import data as data_lib


def test_digits_arrays(digits):
    ds = digits
    assert ds.train_images.dtype == np.uint8 and ds.train_images.shape[1:] == (8, 8, 1)
    assert ds.train_labels.dtype == np.int32
    n = len(ds.train_labels) + len(ds.val_labels) + len(ds.test_labels)
    assert n == 1797
    # stratified 20 % test split, 10 % of the rest for validation
    assert abs(len(ds.test_labels) - 0.2 * 1797) < 10
    assert abs(len(ds.val_labels) - 0.1 * (1797 - len(ds.test_labels))) < 10
    assert set(np.unique(ds.test_labels)) == set(range(10))
    assert ds.train_images.max() == 255


def test_digits_read_from_the_shipped_file_equal_sklearn_load_digits():
    """The loader reads scikit-learn's digits file without importing sklearn.datasets: the
    same arrays as ``load_digits``."""
    from sklearn.datasets import load_digits
    images, labels = data_lib._digits_arrays()
    ref = load_digits()
    np.testing.assert_array_equal(images, ref.images)
    np.testing.assert_array_equal(labels, ref.target)


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_reader_and_fashion_mnist_from_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    tr = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    te = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", tr)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(50) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", te)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    ds = data_lib.load_dataset("fashion_mnist", str(tmp_path), val_fraction=0.2)
    assert ds.train_images.shape == (40, 28, 28, 1) and ds.val_images.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(ds.test_images[..., 0], te)
    np.testing.assert_array_equal(ds.test_labels, np.arange(20) % 10)


def test_truncated_idx_is_refused(tmp_path):
    arr = np.zeros((10, 28, 28), np.uint8)
    header = bytes([0, 0, 8, 3]) + struct.pack(">III", *arr.shape)
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(header + arr.tobytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        data_lib.read_idx(tmp_path / "x.gz")


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_package():
    ds = data_lib.load_dataset("fashion_mnist")
    assert len(ds.train_labels) + len(ds.val_labels) == 60000 and len(ds.test_labels) == 10000
    assert ds.test_images.shape[1:] == (28, 28, 1)
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10


@pytest.mark.parametrize("name", ["cifar10", "mnist", "cifar100"])
def test_absent_data_fails_fast_with_message(name, tmp_path):
    t = time.time()
    with pytest.raises(data_lib.DataNotFoundError, match="never downloads"):
        data_lib.load_dataset(name, str(tmp_path))
    assert time.time() - t < 30  # generous: the failure must not be TFDS's minutes-long retry


def test_absent_fashion_mnist_names_where_it_looked(tmp_path):
    with pytest.raises(data_lib.DataNotFoundError, match=str(tmp_path)):
        data_lib.load_dataset("fashion_mnist", str(tmp_path))


def test_absent_tiny_imagenet(tmp_path):
    with pytest.raises(data_lib.DataNotFoundError, match="Tiny-ImageNet"):
        data_lib.load_dataset("tiny_imagenet", str(tmp_path))


def test_tiny_imagenet_image_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for w in ["n01", "n02"]:
        d = tmp_path / "train" / w / "images"
        d.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / f"{w}_{i}.JPEG")
    (tmp_path / "val" / "images").mkdir(parents=True)
    lines = []
    for i, w in enumerate(["n02", "n01"]):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "val" / "images" / f"v{i}.JPEG")
        lines.append(f"v{i}.JPEG\t{w}\t0\t0\t64\t64")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines))
    ds = data_lib.load_dataset("tiny_imagenet", str(tmp_path), val_fraction=0.0)
    assert ds.train_images.shape == (6, 64, 64, 3)
    assert ds.test_labels.tolist() == [1, 0]


@pytest.fixture
def tfds_mock(monkeypatch):
    """``tfds.testing.mock_data`` with a working batched read.

    tensorflow-datasets 4.9's mock sets the data source's ``__getitems__`` to a function that
    expects ``self`` but is called without it (TypeError); this patches in the same reader
    without ``self``, so the library's batched path runs under the mock as on real ArrayRecord.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing import mocking

    def getitems(record_keys, generator, serialized=False):
        return [generator[k] for k in record_keys]

    monkeypatch.setattr(mocking, "_getitems", getitems)
    return tfds


@pytest.mark.parametrize("name,shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))])
def test_tfds_path_under_mock_data(name, shape, tmp_path, tfds_mock):
    tfds = tfds_mock
    with tfds.testing.mock_data(num_examples=30):
        ds = data_lib.load_dataset(name, str(tmp_path), val_fraction=0.0)
    assert ds.train_images.shape == (30, *shape) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (30, *shape)
    assert ds.train_labels.dtype == np.int32 and ds.train_labels.max() < ds.num_classes


def test_tfds_split_read_in_batches_equals_record_by_record(tmp_path, tfds_mock, monkeypatch):
    tfds = tfds_mock
    monkeypatch.setattr(data_lib, "TFDS_READ_BATCH", 7)  # 45 records: 6 full batches and a ragged one
    with tfds.testing.mock_data(num_examples=45):
        ds = data_lib.load_dataset("cifar10", str(tmp_path), val_fraction=0.0)
        src = tfds.data_source("cifar10", split="train", data_dir=str(tmp_path), download=False)
        calls = []
        real = src.__getitems__
        monkeypatch.setattr(src, "__getitems__", lambda keys: calls.append(len(keys)) or real(keys), raising=False)
        images, labels = data_lib._read_split(src, batch=7)
        one_by_one = [src[i] for i in range(len(src))]
    assert calls == [7] * 6 + [3]
    ref_images = np.stack([np.asarray(r["image"], np.uint8) for r in one_by_one])
    ref_labels = np.asarray([int(r["label"]) for r in one_by_one], np.int32)
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(ds.train_images, ref_images)
    np.testing.assert_array_equal(ds.train_labels, ref_labels)
    assert ds.train_images.shape == (45, 32, 32, 3) and ds.train_labels.dtype == np.int32
    assert 0 <= ds.train_labels.min() and ds.train_labels.max() < 10


def test_read_split_without_batched_access():
    recs = [{"image": np.full((2, 3, 1), i, np.uint8), "label": i % 4} for i in range(5)]
    images, labels = data_lib._read_split(recs, batch=2)  # a list: no __getitems__
    assert images.shape == (5, 2, 3, 1) and images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert labels.tolist() == [0, 1, 2, 3, 0] and labels.dtype == np.int32


def test_tfds_path_on_prepared_array_record_files(tmp_path, monkeypatch):
    """A prepared dataset on disk, as ``tfds build --file_format array_record`` leaves it (PNG
    records in ArrayRecord files, written by a builder named ``cifar10`` at the registered
    version): ``load_dataset`` returns exactly the images and labels written, read in batches."""
    import io

    import tensorflow_datasets as tfds
    from PIL import Image

    rng = np.random.default_rng(0)
    written = {s: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10)
               for s, n in (("train", 23), ("test", 9))}
    version = tfds.builder_cls("cifar10").VERSION  # outside skip_registration, which would skip
    with tfds.core.registered.skip_registration():  # the lazy registration of the real cifar10
        class Cifar10Files(tfds.core.GeneratorBasedBuilder):
            name = "cifar10"
            VERSION = version

            def _info(self):
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                    "id": tfds.features.Text(), "image": tfds.features.Image(shape=(32, 32, 3)),
                    "label": tfds.features.ClassLabel(num_classes=10)}))

            def _split_generators(self, dl_manager):
                return {s: self._generate_examples(s) for s in written}

            def _generate_examples(self, split):
                for i, (im, lb) in enumerate(zip(*written[split])):
                    png = io.BytesIO()
                    Image.fromarray(im).save(png, format="png")
                    yield i, {"id": f"{split}_{i}", "image": png.getvalue(), "label": int(lb)}

    Cifar10Files(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    monkeypatch.setattr(data_lib, "TFDS_READ_BATCH", 5)  # 23 records: 4 full batches and a ragged one
    ds = data_lib.load_dataset("cifar10", str(tmp_path), val_fraction=0.0)
    for split, images, labels in (("train", ds.train_images, ds.train_labels), ("test", ds.test_images, ds.test_labels)):
        ref_images, ref_labels = written[split]
        assert images.shape == ref_images.shape and images.dtype == np.uint8 and labels.dtype == np.int32
        # the files hold the records in TFDS's shuffled order: match each image to the one written
        where = {im.tobytes(): i for i, im in enumerate(ref_images)}
        order = [where[im.tobytes()] for im in images]
        assert sorted(order) == list(range(len(ref_images)))
        np.testing.assert_array_equal(labels, ref_labels[order])


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        data_lib.load_dataset("nope")


@pytest.mark.parametrize("text,expected", [("3", (3,)), ("5,0,9", (0, 5, 9)), (" 2 ", (2,))])
def test_parse_forget_classes(text, expected):
    assert data_lib.parse_forget(text, 10).classes == expected


def test_parse_forget_fraction():
    spec = data_lib.parse_forget("0.1", 10)
    assert spec.fraction == 0.1 and spec.classes == ()


@pytest.mark.parametrize("text,msg", [("10", "outside"), ("-1", "outside"), ("a,b", "malformed"),
                                      ("", "empty"), ("0,1,2,3,4,5,6,7,8,9", "every class"),
                                      ("1.5", "fraction"), ("0.0", "fraction")])
def test_parse_forget_refuses(text, msg):
    with pytest.raises(ValueError, match=msg):
        data_lib.parse_forget(text, 10)


def test_forget_split_classes(digits):
    sp = data_lib.forget_split(digits, data_lib.parse_forget("1,7", 10))
    assert np.isin(digits.train_labels[sp.train_forget], [1, 7]).all()
    assert not np.isin(digits.train_labels[sp.train_retain], [1, 7]).any()
    assert len(sp.train_forget) + len(sp.train_retain) == len(digits.train_labels)
    assert np.isin(digits.test_labels[sp.test_forget], [1, 7]).all()
    assert len(sp.test_forget) + len(sp.test_retain) == len(digits.test_labels)


def test_forget_split_fraction(digits):
    sp = data_lib.forget_split(digits, data_lib.parse_forget("0.1", 10))
    n = len(digits.train_labels)
    assert len(sp.train_forget) == round(0.1 * n)
    assert len(np.intersect1d(sp.train_forget, sp.train_retain)) == 0
    assert len(sp.test_forget) == 0 and len(sp.test_retain) == len(digits.test_labels)


def test_augment_is_crop_of_padded_and_flip():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 255, (16, 8, 8, 3), dtype=np.uint8))
    out = np.asarray(jax.jit(lambda k, x: data_lib.augment(k, x, pad=2, flip=True))(jax.random.key(0), x))
    padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(16):
        windows = [padded[i, a:a + 8, b:b + 8] for a in range(5) for b in range(5)]
        windows += [w[:, ::-1] for w in windows]
        assert any(np.array_equal(out[i], w) for w in windows)
    # without padding, each image is itself or its mirror, and both occur
    out2 = np.asarray(data_lib.augment(jax.random.key(1), x, pad=0, flip=True))
    flipped = [np.array_equal(out2[i], np.asarray(x)[i, :, ::-1]) for i in range(16)]
    same = [np.array_equal(out2[i], np.asarray(x)[i]) for i in range(16)]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)


def test_normalize():
    x = jnp.full((1, 2, 2, 1), 255, jnp.uint8)
    np.testing.assert_allclose(data_lib.normalize(x, (0.5,), (0.25,)), 2.0)
