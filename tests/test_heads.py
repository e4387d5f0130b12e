"""Evaluation heads against scikit-learn references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from threadpoolctl import threadpool_limits

from jaxunlearn import heads


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny sklearn fits run ~50x slower when BLAS threads contend with XLA's threads."""
    with threadpool_limits(1):
        yield


def _mixture(seed, n, d, k, sep=1.0, noise=1.0, counts=None):
    """Gaussian mixture: class centres N(0, sep^2 I), isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * sep
    if counts is None:
        y = rng.integers(0, k, n)
    else:
        y = np.repeat(np.arange(k), counts)
    x = centres[y] + noise * rng.normal(size=(len(y), d))
    return x.astype(np.float32), y.astype(np.int32), centres


@pytest.fixture(scope="module")
def noisy():
    """Overlapping 6-class mixture (probe accuracy well below 100 %)."""
    x, y, c = _mixture(0, 1500, 24, 6, sep=0.45)
    rng = np.random.default_rng(1)
    yt = rng.integers(0, 6, 800).astype(np.int32)
    xt = (c[yt] + rng.normal(size=(800, 24))).astype(np.float32)
    return x, y, xt, yt


def _sklearn_probe_acc(x, y, xt, yt, l2):
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)  # constant pixels (digits) are left unscaled
    clf = LogisticRegression(C=1.0 / (l2 * len(y)), max_iter=1000)
    clf.fit((x - mean) / std, y)
    return clf.score((xt - mean) / std, yt), clf.predict((xt - mean) / std)


# ----------------------------------------------------------------------------- accuracy


def test_split_accuracy():
    pred = np.array([0, 1, 2, 2, 1, 0])
    labels = np.array([0, 1, 1, 2, 2, 2])
    acc = heads.split_accuracy(pred, labels, [2])
    assert acc["forget"] == pytest.approx(1 / 3)
    assert acc["retain"] == pytest.approx(2 / 3)
    assert acc["all"] == pytest.approx(3 / 6)
    none = heads.split_accuracy(pred, labels, None)
    assert none["forget"] is None and none["retain"] == pytest.approx(0.5)
    assert heads.split_accuracy(pred, labels, [0, 1, 2])["retain"] is None


# ----------------------------------------------------------------------------- probes


def test_fast_probe_matches_sklearn_on_digits():
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    tr, te = perm[:1300], perm[1300:]
    x = x.astype(np.float32)
    params = heads.linear_probe_fit(x[tr], y[tr], 10, l2=1e-3)
    acc = np.mean(np.argmax(heads.linear_probe_predict(params, x[te]), -1) == y[te])
    ref, _ = _sklearn_probe_acc(x[tr], y[tr], x[te], y[te], 1e-3)
    assert acc > 0.9
    assert abs(acc - ref) <= 0.01


def test_fast_probe_matches_sklearn_on_noisy_mixture(noisy):
    x, y, xt, yt = noisy
    params = heads.linear_probe_fit(x, y, 6)
    assert params.w.shape == (24, 6) and params.b.shape == (6,)
    pred = np.asarray(jnp.argmax(heads.linear_probe_predict(params, xt), -1))
    ref_acc, ref_pred = _sklearn_probe_acc(x, y, xt, yt, 1e-4)
    assert 0.5 < ref_acc < 0.95  # a non-trivial problem
    assert abs(np.mean(pred == yt) - ref_acc) <= 0.01
    assert np.mean(pred == ref_pred) >= 0.97


def test_fast_probe_stops_on_sklearns_rule(noisy):
    """The returned probe satisfies the documented stop: every component of the gradient of
    (1/N) sum CE + (l2/2)||W||^2 (a float64 NumPy transcription on the standardised features)
    is below ``tol`` in absolute value, and it is the sklearn optimum's objective value."""
    x, y, _, _ = noisy
    l2, tol = 1e-4, 1e-4
    params = heads.linear_probe_fit(x, y, 6, l2=l2, tol=tol)
    z = (x.astype(np.float64) - np.asarray(params.mean, np.float64)) / np.asarray(params.scale, np.float64)
    w, b = np.asarray(params.w, np.float64), np.asarray(params.b, np.float64)

    def objective_and_grad(w, b):
        logits = z @ w + b
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        onehot = np.eye(6)[y]
        loss = -np.mean(np.log(p[np.arange(len(y)), y])) + 0.5 * l2 * np.sum(w ** 2)
        d = (p - onehot) / len(y)
        return loss, z.T @ d + l2 * w, d.sum(0)

    loss, gw, gb = objective_and_grad(w, b)
    assert max(np.abs(gw).max(), np.abs(gb).max()) < 2 * tol  # float32 iterates: a 2x margin
    ref = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(z, y)
    ref_loss, _, _ = objective_and_grad(ref.coef_.T, ref.intercept_)
    assert loss == pytest.approx(ref_loss, abs=1e-6)


def test_fast_probe_vmaps_over_models(noisy):
    x, y, _, _ = noisy  # the shapes of the test above: the single fits reuse its compile
    x2 = x * 2.0 + np.float32(0.3) * np.roll(x, 1, axis=1)
    y2 = np.roll(y, 7)
    fit = functools.partial(heads.linear_probe_fit, num_classes=6)
    batched = jax.vmap(fit)(jnp.stack([x, x2]), jnp.stack([y, y2]))
    for i, (xi, yi) in enumerate([(x, y), (x2, y2)]):
        single = fit(xi, yi)
        for a, b in zip(single, batched):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-4, atol=1e-4)


def test_sgd_probe_protocol(noisy):
    x, y, xt, yt = noisy
    key = jax.random.key(3)
    # 1500 samples -> 150 held out, 1350 trained: the last batch of each epoch is partial.
    params, hist = heads.linear_probe_sgd(x, y, 6, key=key, epochs=8, return_history=True)
    assert hist.shape == (8,)
    acc = np.mean(np.argmax(heads.linear_probe_predict(params, xt), -1) == yt)
    ref_acc, _ = _sklearn_probe_acc(x, y, xt, yt, 1e-4)
    assert acc > ref_acc - 0.05
    # Early stopping keeps the first best epoch: a run that stops there ends with the same
    # parameters (same split, init and shuffles). That run is vmapped over two keys (the
    # first is the key above), which also checks vmap against the unbatched call.
    best = int(np.argmax(np.asarray(hist)))
    keys = jnp.stack([key, jax.random.key(11)])
    short = jax.vmap(lambda k: heads.linear_probe_sgd(x, y, 6, key=k, epochs=best + 1))(keys)
    for a, b in zip(params, short):
        np.testing.assert_allclose(np.asarray(b[0]), np.asarray(a), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(short.w[1]), np.asarray(short.w[0]))


# ----------------------------------------------------------------------------- NCC


def test_ncc_equals_sklearn_nearest_centroid():
    x, y, _ = _mixture(5, 0, 16, 5, sep=0.5, counts=[200, 30, 90, 7, 150])
    rng = np.random.default_rng(6)
    xt = (rng.normal(size=(700, 16)) * 1.2).astype(np.float32)
    means = heads.ncc_fit(x, y, 5)
    ref = NearestCentroid().fit(x.astype(np.float64), y)
    np.testing.assert_allclose(np.asarray(means), ref.centroids_, rtol=1e-5, atol=1e-6)
    pred = np.asarray(heads.ncc_predict(means, xt))
    np.testing.assert_array_equal(pred, ref.predict(xt.astype(np.float64)))
    np.testing.assert_array_equal(np.asarray(heads.ncc_predict(means, x)), ref.predict(x))


def test_ncc_skips_empty_class():
    x = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]], np.float32)
    y = np.array([0, 0, 2])
    means = heads.ncc_fit(x, y, 3)
    assert np.all(np.isnan(np.asarray(means[1])))
    pred = heads.ncc_predict(means, np.array([[0.1, 0.1], [4.0, 4.0], [2.0, 2.0]], np.float32))
    np.testing.assert_array_equal(np.asarray(pred), [0, 2, 0])


# ----------------------------------------------------------------------------- k-NN


def _sk_knn(x, y, xt, k=5, metric="cosine"):
    return KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute").fit(
        x.astype(np.float64), y).predict(xt.astype(np.float64))


def test_knn_exact_on_tie_free_fixture():
    # Two classes and k = 5 (odd): no vote ties; continuous data: no distance ties.
    x, y, c = _mixture(7, 900, 12, 2, sep=0.4)
    rng = np.random.default_rng(8)
    xt = (c[rng.integers(0, 2, 500)] + rng.normal(size=(500, 12))).astype(np.float32)
    pred = np.asarray(heads.knn_predict(x, y, xt, 5, "cosine", num_classes=2, chunk_size=64))
    np.testing.assert_array_equal(pred, _sk_knn(x, y, xt))


def test_knn_agrees_with_sklearn_multiclass():
    x, y, c = _mixture(9, 2000, 20, 7, sep=0.5)
    rng = np.random.default_rng(10)
    yt = rng.integers(0, 7, 1000)
    xt = (c[yt] + rng.normal(size=(1000, 20))).astype(np.float32)
    for metric in ("cosine", "euclidean"):
        pred = np.asarray(heads.knn_predict(x, y, xt, 5, metric, num_classes=7))
        assert np.mean(pred == _sk_knn(x, y, xt, metric=metric)) >= 0.995
    # Chunking does not change the answer (1000 queries, chunks of 33: padded last chunk).
    a = heads.knn_predict(x, y, xt, 5, "cosine", num_classes=7, chunk_size=33)
    b = heads.knn_predict(x, y, xt, 5, "cosine", num_classes=7, chunk_size=1024)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_knn_vote_tie_goes_to_smallest_label():
    # Query at angle 0; neighbours at small angles: labels 3, 1, 3, 1 (2-2 vote tie).
    angles = np.array([0.1, 0.2, 0.3, 0.4, 2.0, 2.5])
    x = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    y = np.array([3, 1, 3, 1, 0, 2])
    q = np.array([[1.0, 0.0]], np.float32)
    pred = heads.knn_predict(x, y, q, 4, "cosine", num_classes=4)
    assert int(pred[0]) == 1 == int(_sk_knn(x, y, q, k=4)[0])


# ----------------------------------------------------------------------------- all heads


@pytest.mark.parametrize("probe", ["fast", "sgd"])
def test_evaluate_heads(noisy, probe):
    x, y, xt, yt = noisy
    out = heads.evaluate_heads(x, y, xt, yt, [2], 6, probe=probe)
    for name in ("lp", "ncc", "knn"):
        assert set(out[name]) == {"retain", "forget", "all"}
        for v in out[name].values():
            assert 0.0 <= v <= 1.0
        assert out["timings"][name] >= 0.0
    ncc_pred = heads.ncc_predict(heads.ncc_fit(x, y, 6), xt)
    assert out["ncc"] == heads.split_accuracy(np.asarray(ncc_pred), yt, [2])
    no_knn = heads.evaluate_heads(x, y, xt, yt, None, 6, probe="none", knn=False)
    assert set(no_knn) == {"ncc", "timings"} and no_knn["ncc"]["forget"] is None


# ----------------------------------------------------------------------------- SGD probe protocols


def _numpy_sgd_probe(x, y, k, key, *, lr, momentum, batch_size, epochs, holdout, cosine, patience):
    """NumPy transcription of the authors' probe loop (evaluation/linear_prob.py,
    ``_train_linear_probe``), fed the random draws ``linear_probe_sgd`` makes from ``key``."""
    n, d = x.shape
    n_hold = int(round(holdout * n))
    k_split, k_w, k_b, k_shuffle = jax.random.split(key, 4)
    perm = np.asarray(jax.random.permutation(k_split, n))
    bound = 1.0 / np.sqrt(d)
    w = np.asarray(jax.random.uniform(k_w, (d, k), jnp.float32, -bound, bound), np.float64)
    b = np.asarray(jax.random.uniform(k_b, (k,), jnp.float32, -bound, bound), np.float64)
    xh, yh = x[perm[:n_hold]].astype(np.float64), y[perm[:n_hold]]
    xt, yt = x[perm[n_hold:]].astype(np.float64), y[perm[n_hold:]]
    bw, bb = np.zeros_like(w), np.zeros_like(b)
    best, best_p, no_imp, hist = -1.0, (w, b), 0, []
    for e in range(epochs):
        rate = lr * 0.5 * (1 + np.cos(np.pi * e / epochs)) if cosine else lr
        order = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, e), len(yt)))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            logits = xt[idx] @ w + b
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(idx)), yt[idx]] -= 1.0
            gw, gb = xt[idx].T @ p / len(idx), p.mean(0)
            bw, bb = momentum * bw + gw, momentum * bb + gb
            w, b = w - rate * bw, b - rate * bb
        acc = float(np.mean(np.argmax(xh @ w + b, 1) == yh))
        hist.append(acc)
        if acc > best:
            best, best_p, no_imp = acc, (w.copy(), b.copy()), 0
        else:
            no_imp += 1
        if patience is not None and no_imp >= patience:
            break
    return best_p, np.asarray(hist + [np.nan] * (epochs - len(hist)))


@pytest.mark.parametrize("cosine,patience", [(False, None), (True, None), (False, 2)])
def test_sgd_probe_matches_numpy_transcription(cosine, patience):
    x, y, _ = _mixture(21, 230, 5, 3, sep=0.6)  # 207 trained: partial last batch of 32
    key = jax.random.key(4)
    kw = dict(lr=0.05, momentum=0.9, batch_size=32, epochs=7, holdout=0.1, cosine=cosine,
              patience=patience)
    params, hist = heads.linear_probe_sgd(x, y, 3, key=key, return_history=True, **kw)
    (w, b), ref_hist = _numpy_sgd_probe(x, y, 3, key, **kw)
    np.testing.assert_allclose(np.asarray(params.w), w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(params.b), b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(hist), ref_hist, atol=1e-6)
    if patience is not None:  # the fixture stops early (else the case tests nothing new)
        assert np.isnan(ref_hist[-1])


def test_probe_protocols_and_epoch_count_honoured(noisy):
    x, y, xt, yt = noisy
    assert heads.PROBE_PROTOCOLS["paper-cifar10"].epochs == 20
    assert heads.PROBE_PROTOCOLS["paper-cifar100"].epochs == 150
    tiny = heads.PROBE_PROTOCOLS["paper-tiny_imagenet"]
    assert (tiny.epochs, tiny.cosine, tiny.patience, tiny.lr, tiny.batch_size) == (150, True, 40, 0.01, 128)
    assert heads.paper_probe("cifar100") == "paper-cifar100"
    assert heads.paper_probe("fashion_mnist") == "paper-cifar10"
    key = jax.random.key(5)
    for epochs in (1, 3):
        out = heads.evaluate_heads(x, y, xt, yt, [2], 6, probe="sgd", knn=False, key=key,
                                   probe_epochs=epochs)
        params = heads.linear_probe_sgd(x, y, 6, key=key, epochs=epochs)
        pred = np.asarray(jnp.argmax(heads.linear_probe_predict(params, xt), -1))
        assert out["lp"] == heads.split_accuracy(pred, yt, [2])
    _, hist = heads.linear_probe_sgd(x, y, 6, key=key, epochs=30, return_history=True)
    assert hist.shape == (30,) and np.all(np.isfinite(np.asarray(hist)))
    with pytest.raises(ValueError, match="unknown probe"):
        heads.evaluate_heads(x, y, xt, yt, [2], 6, probe="paper-mnist")
    with pytest.raises(ValueError, match="probe_epochs"):
        heads.evaluate_heads(x, y, xt, yt, [2], 6, probe="sgd", probe_epochs=0)
