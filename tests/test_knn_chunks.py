"""k-NN chunked over training rows: the same predictions as one block and as scikit-learn."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from jaxunlearn import heads


def clusters(n, m, d=16, k=6, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1.0, (k, d))
    y = rng.integers(0, k, n)
    yt = rng.integers(0, k, m)
    x = (means[y] + rng.normal(0, 1.0, (n, d))).astype(np.float32)
    xt = (means[yt] + rng.normal(0, 1.0, (m, d))).astype(np.float32)
    return x, y.astype(np.int32), xt


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("train_chunk", [7, 64, 333])  # 333 rows: one ragged, overlapping last block
def test_chunked_equals_one_block_and_sklearn(metric, train_chunk):
    x, y, xt = clusters(333 + 290, 150)
    chunked = np.asarray(heads.knn_predict(x, y, xt, 5, metric, num_classes=6, chunk_size=40,
                                           train_chunk=train_chunk))
    whole = np.asarray(heads.knn_predict(x, y, xt, 5, metric, num_classes=6, chunk_size=40, train_chunk=None))
    ref = KNeighborsClassifier(5, metric=metric, algorithm="brute").fit(x, y).predict(xt)
    np.testing.assert_array_equal(chunked, whole)
    # float32 vs sklearn's float64 distances: a near-tie may rank differently, never more than 1 %
    assert np.mean(chunked == ref) >= 0.99


def test_ties_prefer_lower_rows_in_every_chunking():
    # duplicated training rows with different labels: equal distances, the lower row wins
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 8)).astype(np.float32)
    x = np.concatenate([base, base, base])
    y = np.concatenate([np.zeros(50), np.ones(50), np.full(50, 2)]).astype(np.int32)
    q = base[:20] + 1e-3 * rng.normal(size=(20, 8)).astype(np.float32)
    preds = [np.asarray(heads.knn_predict(x, y, q, 1, "euclidean", num_classes=3, train_chunk=c))
             for c in (None, 1, 16, 49, 150)]
    for p in preds:
        np.testing.assert_array_equal(p, np.zeros(20))


def test_k_larger_than_block_and_k_equal_n():
    x, y, xt = clusters(40, 13, k=3)
    a = heads.knn_predict(x, y, xt, 9, "cosine", num_classes=3, train_chunk=4)  # block grows to k
    b = heads.knn_predict(x, y, xt, 9, "cosine", num_classes=3, train_chunk=None)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    every = np.asarray(heads.knn_predict(x, y, xt, 40, "euclidean", num_classes=3, train_chunk=16))
    np.testing.assert_array_equal(every, np.full(13, np.argmax(np.bincount(y, minlength=3))))


def test_k_out_of_range_is_refused():
    x, y, xt = clusters(10, 3)
    with pytest.raises(ValueError, match="k=11 neighbours"):
        heads.knn_predict(x, y, xt, 11, "cosine", num_classes=6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_traced_path_equals_host_loop(metric):
    import jax
    x, y, xt = clusters(300, 70)
    host = heads.knn_predict(x, y, xt, 5, metric, num_classes=6, chunk_size=32, train_chunk=64)
    traced = jax.jit(lambda a, b, c: heads.knn_predict(a, b, c, 5, metric, num_classes=6, chunk_size=32,
                                                         train_chunk=64))(x, y, xt)
    np.testing.assert_array_equal(np.asarray(host), np.asarray(traced))
