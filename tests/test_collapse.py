"""Neural-collapse metrics against a float64 NumPy transcription of each formula."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from jaxunlearn import collapse, heads

# ----------------------------------------------------------------------------- reference


def _means(h, y, k):
    return np.stack([h[y == c].mean(0) for c in range(k)])


def ref_nc1(h, y, k, center="sample"):
    h = h.astype(np.float64)
    mu = _means(h, y, k)
    mu_g = h.mean(0) if center == "sample" else mu.mean(0)
    r = h - mu[y]
    s_w = r.T @ r / len(y)
    m = mu - mu_g
    s_b = m.T @ m / k
    return np.trace(s_w @ np.linalg.pinv(s_b, rcond=1e-10, hermitian=True)) / k


def ref_nc1_subset(h, y, k, subset):
    """tr(S_W^F S_B^+)/K with S_W^F over samples of `subset` classes, S_B global."""
    h = h.astype(np.float64)
    mu = _means(h, y, k)
    m = mu - h.mean(0)
    sel = np.isin(y, subset)
    r = h[sel] - mu[y[sel]]
    s_w = r.T @ r / sel.sum()
    return np.trace(s_w @ np.linalg.pinv(m.T @ m / k, rcond=1e-10, hermitian=True)) / k


def _centred(h, y, k):
    h = h.astype(np.float64)
    return _means(h, y, k) - h.mean(0)


def ref_equinorm(h, y, k):
    n = np.linalg.norm(_centred(h, y, k), axis=1)
    return n.std() / n.mean()


def _cos(h, y, k):
    m = _centred(h, y, k)
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    return u @ u.T


def ref_equiangularity(h, y, k):
    c = _cos(h, y, k)
    return c[~np.eye(k, dtype=bool)].std()


def ref_angle_to_etf(h, y, k):
    c = _cos(h, y, k)
    return np.abs(c[~np.eye(k, dtype=bool)] + 1 / (k - 1)).mean()


def ref_etf_distance(h, y, k):
    m = _centred(h, y, k)
    g = m @ m.T
    etf = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    return np.linalg.norm(g / np.linalg.norm(g) - etf)


def ref_nc3(h, y, k, w):
    m = _centred(h, y, k)
    return np.linalg.norm(w / np.linalg.norm(w) - m / np.linalg.norm(m))


def ref_nc4(h, y, k, w, b):
    h = h.astype(np.float64)
    mu = _means(h, y, k)
    net = np.argmax(h @ w.T + b, 1)
    ncc = np.argmin(((h[:, None, :] - mu[None]) ** 2).sum(-1), 1)
    return np.mean(net != ncc)


def ref_misalignment_per_class(h, y, k, w):
    m = _centred(h, y, k)
    return 1 - (m * w).sum(1) / (np.linalg.norm(m, axis=1) * np.linalg.norm(w, axis=1))


# ----------------------------------------------------------------------------- fixtures


def _data(kind, seed=0, d=12):
    k = 5
    rng = np.random.default_rng(seed)
    # The same N = 300 for every kind, so the jitted metrics compile once.
    if kind == "random":
        counts = [60] * 5
        sep, noise = 1.0, 1.0
    elif kind == "unbalanced":
        counts = [150, 20, 75, 9, 46]
        sep, noise = 2.0, 0.5
    else:  # noisy: classes barely separated
        counts = [80, 50, 110, 30, 30]
        sep, noise = 0.2, 2.0
    y = np.repeat(np.arange(k), counts)
    rng.shuffle(y)
    centres = rng.normal(size=(k, d)) * sep + 3.0  # an offset: mu_G far from 0
    h = (centres[y] + noise * rng.normal(size=(len(y), d))).astype(np.float32)
    w = rng.normal(size=(k, d)).astype(np.float32)
    b = rng.normal(size=k).astype(np.float32)
    return h, y.astype(np.int32), w, b


KINDS = ["random", "unbalanced", "noisy"]
RTOL = 1e-5


@pytest.mark.parametrize("kind", KINDS)
def test_metrics_match_numpy_reference(kind):
    h, y, w, b = _data(kind)
    k = 5
    checks = {
        "nc1": (collapse.nc1(h, y, k), ref_nc1(h, y, k)),
        "nc1_class_mean_global": (collapse.nc1_class_mean_global(h, y, k),
                                  ref_nc1(h, y, k, center="class")),
        "nc1_normalized": (collapse.nc1_normalized(h, y, k),
                           ref_nc1(h / np.linalg.norm(h, axis=1, keepdims=True), y, k)),
        "nc2_equinorm": (collapse.nc2_equinorm(h, y, k), ref_equinorm(h, y, k)),
        "nc2_equiangularity": (collapse.nc2_equiangularity(h, y, k),
                               ref_equiangularity(h, y, k)),
        "nc2_angle_to_etf": (collapse.nc2_angle_to_etf(h, y, k), ref_angle_to_etf(h, y, k)),
        "nc2_etf_distance": (collapse.nc2_etf_distance(h, y, k), ref_etf_distance(h, y, k)),
        "nc3_self_duality": (collapse.nc3_self_duality(h, y, k, w), ref_nc3(h, y, k, w)),
        "misalignment": (collapse.misalignment(h, y, k, w),
                         ref_misalignment_per_class(h, y, k, w).mean()),
        "nc4_ncc_disagreement": (collapse.nc4_ncc_disagreement(h, y, k, w, b),
                                 ref_nc4(h, y, k, w, b)),
    }
    for name, (got, want) in checks.items():
        np.testing.assert_allclose(float(got), want, rtol=RTOL, atol=1e-7, err_msg=name)
    # collapse_metrics reports the same values under the same names.
    allm = collapse.collapse_metrics(h, y, k, w, b)
    for name, (_, want) in checks.items():
        np.testing.assert_allclose(allm[name], want, rtol=RTOL, atol=1e-7, err_msg=name)
    assert allm["retain"] is None and allm["forget"] is None


def test_nc1_when_dim_below_classes():
    # D = 3 < K - 1 = 4: S_B has full rank D and the pseudo-inverse is a plain inverse.
    h, y, _, _ = _data("random", seed=2, d=3)
    np.testing.assert_allclose(float(collapse.nc1(h, y, 5)), ref_nc1(h, y, 5), rtol=RTOL)


def test_ddof_variant():
    h, y, _, _ = _data("unbalanced")
    n = np.linalg.norm(_centred(h, y, 5), axis=1)
    np.testing.assert_allclose(float(collapse.nc2_equinorm(h, y, 5, ddof=1)),
                               n.std(ddof=1) / n.mean(), rtol=RTOL)


def _simplex_etf(k=4, d=9, per_class=7, seed=0):
    """Features equal to their class means, which form a simplex ETF in D > K dimensions,
    shifted by an offset orthogonal to the ETF; W equals the centred means."""
    q = ortho_group.rvs(d, random_state=seed)
    basis, offset_dir = q[:k], q[k]
    m = np.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k) @ basis  # unit-norm rows
    y = np.tile(np.arange(k), per_class)
    h = (m[y] + 2.5 * offset_dir).astype(np.float32)
    return h, y.astype(np.int32), m.astype(np.float32)


def test_simplex_etf_is_fully_collapsed():
    h, y, w = _simplex_etf()
    k = 4
    out = collapse.collapse_metrics(h, y, k, w, np.zeros(k, np.float32), forget_classes=[1])
    for name in ("nc1", "nc1_class_mean_global", "nc1_normalized", "nc2_equinorm",
                 "nc2_equiangularity", "nc2_angle_to_etf", "nc2_etf_distance",
                 "nc3_self_duality", "misalignment", "nc4_ncc_disagreement"):
        assert abs(out[name]) < 1e-5, (name, out[name])
    for name in ("nc1", "misalignment", "nc4_ncc_disagreement", "nc2_angle_to_etf"):
        assert abs(out["forget"][name]) < 1e-5, (name, out["forget"][name])
    assert out["forget"]["centred_norm_ratio"] == pytest.approx(1.0, abs=1e-5)
    means = heads.ncc_fit(h, y, k)
    assert np.mean(np.asarray(heads.ncc_predict(means, h)) == y) == 1.0


def test_retain_and_forget_restrictions():
    h, y, w, b = _data("unbalanced", seed=4)
    k, fc = 5, [1, 3]
    out = collapse.collapse_metrics(h, y, k, w, b, forget_classes=fc)
    # retain: everything recomputed on retain classes only (relabelled 0..K_r-1).
    keep = ~np.isin(y, fc)
    rc = np.array([0, 2, 4])
    remap = {c: i for i, c in enumerate(rc)}
    hr, yr = h[keep], np.array([remap[c] for c in y[keep]])
    wr, br = w[rc], b[rc]
    r = out["retain"]
    np.testing.assert_allclose(r["nc1"], ref_nc1(hr, yr, 3), rtol=RTOL)
    np.testing.assert_allclose(r["nc2_etf_distance"], ref_etf_distance(hr, yr, 3), rtol=RTOL)
    np.testing.assert_allclose(r["nc3_self_duality"], ref_nc3(hr, yr, 3, wr), rtol=RTOL)
    np.testing.assert_allclose(r["misalignment"],
                               ref_misalignment_per_class(hr, yr, 3, wr).mean(), rtol=RTOL)
    np.testing.assert_allclose(r["nc4_ncc_disagreement"], ref_nc4(hr, yr, 3, wr, br),
                               rtol=RTOL)
    # forget: forget-class quantities inside the global geometry.
    f = out["forget"]
    np.testing.assert_allclose(f["nc1"], ref_nc1_subset(h, y, k, fc), rtol=RTOL)
    np.testing.assert_allclose(
        f["misalignment"], ref_misalignment_per_class(h, y, k, w)[fc].mean(), rtol=RTOL)
    norms = np.linalg.norm(_centred(h, y, k), axis=1)
    np.testing.assert_allclose(f["centred_norm_ratio"], norms[fc].mean() / norms.mean(),
                               rtol=RTOL)
    cos = _cos(h, y, k)
    pairs = [abs(cos[c, j] + 1 / (k - 1)) for c in fc for j in range(k) if j != c]
    np.testing.assert_allclose(f["nc2_angle_to_etf"], np.mean(pairs), rtol=RTOL)
    mu = _means(h.astype(np.float64), y, k)
    sel = np.isin(y, fc)
    net = np.argmax(h[sel] @ w.T + b, 1)
    ncc = np.argmin(((h[sel][:, None] - mu[None]) ** 2).sum(-1), 1)
    np.testing.assert_allclose(f["nc4_ncc_disagreement"], np.mean(net != ncc), atol=1e-7)


def test_forget_nc1_decomposes_global_nc1():
    h, y, _, _ = _data("noisy", seed=5)
    total = collapse.collapse_metrics(h, y, 5)["nc1"]
    parts = [collapse.collapse_metrics(h, y, 5, forget_classes=[c], with_retain=False)
             ["forget"]["nc1"] for c in range(5)]
    weights = np.bincount(y) / len(y)
    np.testing.assert_allclose(np.dot(weights, parts), total, rtol=1e-5)


def test_without_weights_and_validation():
    h, y, w, _ = _data("random")
    out = collapse.collapse_metrics(h, y, 5, forget_classes=[0])
    for name in ("nc3_self_duality", "nc4_ncc_disagreement", "misalignment"):
        assert name not in out and name not in out["retain"] and name not in out["forget"]
    with pytest.raises(ValueError, match="classes without samples"):
        collapse.collapse_metrics(h, y, 6)
    with pytest.raises(ValueError, match="weights"):
        collapse.collapse_metrics(h, y, 5, w[:, :3])
    with pytest.raises(ValueError, match="forget_classes"):
        collapse.collapse_metrics(h, y, 5, forget_classes=[7])
    # Only one retain class left: the retain restriction is undefined.
    assert collapse.collapse_metrics(h, y, 5, forget_classes=[0, 1, 2, 3])["retain"] is None


# ----------------------------------------------------------------------------- the authors' conventions
# float64 transcriptions of ycgao1/CMF_Unlearning evaluation/nc.py (nc_metrics, lines 124-215)


def ref_authors_sw_sb(h, y, classes, use_global):
    h = h.astype(np.float64)
    k = len(classes)
    mu = np.stack([h[y == c].mean(0) for c in classes])
    mu_g = h.mean(0) if use_global else h[np.isin(y, classes)].mean(0)
    s_w = np.zeros((h.shape[1], h.shape[1]))
    for i, c in enumerate(classes):
        d = h[y == c] - mu[i]
        s_w += d.T @ d / len(d)
    s_w /= k
    diff = (mu - mu_g).T
    return s_w, diff @ diff.T / k, mu, mu_g


def ref_authors_nc1(h, y, classes, use_global):
    s_w, s_b, _, _ = ref_authors_sw_sb(h, y, classes, use_global)
    return np.trace(s_w @ np.linalg.pinv(s_b, rcond=1e-10, hermitian=True)) / len(classes)


def ref_etf(k):
    return (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)


def ref_authors_nc2(mu, mu_g):
    hh = (mu - mu_g) @ (mu - mu_g).T
    return np.linalg.norm(hh / np.linalg.norm(hh) - ref_etf(len(mu)))


def ref_authors_cdnv(h, y, classes):
    h = h.astype(np.float64)
    k = len(classes)
    mu = [h[y == c].mean(0) for c in classes]
    var = [np.sum((h[y == c] - mu[i]) ** 2, 1).mean() for i, c in enumerate(classes)]
    num = den = 0.0
    for i in range(k):
        for j in range(i + 1, k):
            num += var[i] + var[j]
            den += 2 * np.sum((mu[i] - mu[j]) ** 2)
    return num / den * 2 / (k * (k - 1))


def ref_galanti_cdnv(h, y, classes):
    h = h.astype(np.float64)
    mu = {c: h[y == c].mean(0) for c in classes}
    var = {c: np.sum((h[y == c] - mu[c]) ** 2, 1).mean() for c in classes}
    vals = [(var[a] + var[b]) / (2 * np.sum((mu[a] - mu[b]) ** 2))
            for i, a in enumerate(classes) for b in classes[i + 1:]]
    return np.mean(vals)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("normalize", [False, True])
def test_authors_metrics_match_their_formulas(kind, normalize):
    h, y, w, _ = _data(kind)
    k, forget = 5, [1, 3]
    retain = [0, 2, 4]
    hr = h / np.linalg.norm(h, axis=1, keepdims=True) if normalize else h
    got = collapse.authors_metrics(h, y, k, w, forget, normalize=normalize)
    allc = list(range(k))
    ref = {
        "nc1_all": ref_authors_nc1(hr, y, allc, False),
        "nc1_retain": ref_authors_nc1(hr, y, retain, True),
        "nc1_forget": ref_authors_nc1(hr, y, forget, True),
        "cdnv_all": ref_authors_cdnv(hr, y, allc),
        "cdnv_retain": ref_authors_cdnv(hr, y, retain),
        "cdnv_forget": ref_authors_cdnv(hr, y, forget),
    }
    _, _, mu_all, mug_all = ref_authors_sw_sb(hr, y, allc, False)
    _, _, mu_r, mug_r = ref_authors_sw_sb(hr, y, retain, True)
    ref["nc2_all"] = ref_authors_nc2(mu_all, mug_all)
    ref["nc2_retain"] = ref_authors_nc2(mu_r, mug_r)
    wm = w.astype(np.float64) @ (mu_all - mug_all).T
    ref["nc3_zhu"] = np.linalg.norm(wm / np.linalg.norm(wm) - ref_etf(k))
    delta = np.abs(w.astype(np.float64) @ w.T - wm)
    ref["delta_all"] = np.linalg.norm(delta)
    ref["delta_retain"] = np.linalg.norm(delta[np.ix_(retain, retain)])
    ref["delta_forget"] = np.linalg.norm(delta[np.ix_(forget, forget)])
    assert set(got) == set(ref)
    for name, v in ref.items():
        assert got[name] == pytest.approx(v, rel=1e-4, abs=1e-6), name


def test_authors_conventions_against_ours():
    # Balanced data: per-class S_W = pooled S_W, so nc1_all equals the default nc1.
    h, y, w, _ = _data("random")
    assert collapse.nc1_per_class_sw(h, y, 5) == pytest.approx(float(collapse.nc1(h, y, 5)), rel=1e-5)
    # Unbalanced: they differ (the issue measured 4 % on its data).
    h, y, w, _ = _data("unbalanced")
    a, b = collapse.nc1_per_class_sw(h, y, 5), float(collapse.nc1(h, y, 5))
    assert a == pytest.approx(ref_authors_nc1(h, y, list(range(5)), False), rel=1e-4)
    assert abs(a - b) > 1e-3 * b
    # 'subset' centring of a retain subset = the retain samples' own mean
    assert collapse.nc1_per_class_sw(h, y, 5, [0, 2, 4], center="subset") == pytest.approx(
        ref_authors_nc1(h, y, [0, 2, 4], False), rel=1e-4)
    # one forget class: rank-1 S_B, NC1 = u^T S_W u / ||mu_f - mu_G||^2
    s_w, _, mu, mu_g = ref_authors_sw_sb(h, y, [3], True)
    d = mu[0] - mu_g
    assert collapse.nc1_per_class_sw(h, y, 5, [3]) == pytest.approx(d @ s_w @ d / (d @ d) ** 2, rel=1e-4)
    # Galanti's CDNV and the authors' differ by the pair pooling
    for classes in ([0, 1, 2, 3, 4], [1, 3]):
        assert collapse.cdnv(h, y, 5, classes) == pytest.approx(ref_galanti_cdnv(h, y, classes), rel=1e-4)
    assert collapse.cdnv(h, y, 5, [2]) is None and collapse.cdnv_authors(h, y, 5, [2]) is None
    # Papyan's squared NC3
    assert float(collapse.nc3_self_duality_squared(h, y, 5, w)) == pytest.approx(
        ref_nc3(h, y, 5, w) ** 2, rel=1e-5)
    with pytest.raises(ValueError, match="center"):
        collapse.nc1_per_class_sw(h, y, 5, center="mean")


def test_zhu_nc3_and_delta_vanish_on_a_self_dual_simplex_etf():
    k, d = 4, 9
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(d, k)))[0]
    etf = np.sqrt(k / (k - 1)) * (np.eye(k) - 1.0 / k) @ basis.T
    y = np.repeat(np.arange(k), 6)
    h = etf[y].astype(np.float32)
    w = etf.astype(np.float32)
    assert float(collapse.nc3_zhu(h, y, k, w)) == pytest.approx(0.0, abs=1e-5)
    assert collapse.self_duality_delta(h, y, k, w) == pytest.approx(0.0, abs=1e-5)
    assert float(collapse.nc3_zhu(h, y, k, 3.0 * w)) == pytest.approx(0.0, abs=1e-5)  # scale-free
    assert collapse.self_duality_delta(h, y, k, 3.0 * w) > 1.0                       # not scale-free


def test_ncc_train_accuracy():
    h, y, _, _ = _data("noisy")
    got = collapse.ncc_train_accuracy(h, y, 5, [1])
    mu = _means(h.astype(np.float64), y, 5)
    pred = np.argmin(((h[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    assert got["forget"] == pytest.approx(np.mean(pred[y == 1] == 1))
    assert got["retain"] == pytest.approx(np.mean(pred[y != 1] == y[y != 1]))
    assert 0.0 < got["forget"] < 1.0
