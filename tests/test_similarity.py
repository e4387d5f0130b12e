"""Linear CKA against a NumPy transcription (HSIC form, Kornblith et al. 2019)."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from jaxunlearn import similarity


def ref_cka(x, y):
    """Linear CKA via centred Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    y = (np.tanh(x @ rng.normal(size=(16, 9))) + 0.5 * rng.normal(size=(200, 9))).astype(
        np.float32)
    return x, y


def test_cka_matches_reference(xy):
    x, y = xy
    np.testing.assert_allclose(float(similarity.linear_cka(x, y)), ref_cka(x, y), rtol=1e-5)
    # N < D: the Gram-matrix branch.
    np.testing.assert_allclose(float(similarity.linear_cka(x[:10], y[:10])),
                               ref_cka(x[:10], y[:10]), rtol=1e-5)


def test_cka_identity_and_invariances(xy):
    x, y = xy
    assert float(similarity.linear_cka(x, x)) == pytest.approx(1.0, abs=1e-6)
    q = ortho_group.rvs(16, random_state=1).astype(np.float32)
    assert float(similarity.linear_cka(x, 3.7 * x @ q + 5.0)) == pytest.approx(1.0, abs=1e-5)
    base = float(similarity.linear_cka(x, y))
    assert float(similarity.linear_cka(x @ q, 0.01 * y)) == pytest.approx(base, rel=1e-5)
    assert 0.0 < base < 1.0


def test_cka_retain_forget(xy):
    x, y = xy
    labels = np.arange(200) % 4
    out = similarity.cka_retain_forget(x, y, labels, [1, 3])
    forget = np.isin(labels, [1, 3])
    np.testing.assert_allclose(out["forget"], ref_cka(x[forget], y[forget]), rtol=1e-5)
    np.testing.assert_allclose(out["retain"], ref_cka(x[~forget], y[~forget]), rtol=1e-5)
    np.testing.assert_allclose(out["all"], ref_cka(x, y), rtol=1e-5)
    assert similarity.cka_retain_forget(x, y, labels, [7])["forget"] is None
    with pytest.raises(ValueError, match="sample counts"):
        similarity.cka_retain_forget(x, y[:-1], labels, [1])
