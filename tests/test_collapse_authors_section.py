"""The "collapse" section's CMF-authors entries (issue 16, P11): ``authors``, ``ncc_train`` and
``test_misalignment`` equal direct calls of the collapse functions, vanish / reach 100 % on an
exact simplex ETF, stay defined for sample forgetting, and flatten into unique columns."""

import numpy as np
import pytest

from jaxunlearn import collapse as collapse_lib, evaluators
from jaxunlearn.evaluators import Features, ForgetSet, Inputs
from jaxunlearn.evaluators.collapse import split_misalignment

K, D, N, M = 5, 8, 500, 300


def mixture(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, D)) * 2.0
    ytr, yte = np.arange(N) % K, rng.integers(0, K, M)
    xtr = (centres[ytr] + rng.normal(size=(N, D))).astype(np.float32)
    xte = (centres[yte] + rng.normal(size=(M, D))).astype(np.float32)
    w, b = rng.normal(size=(K, D)).astype(np.float32), rng.normal(size=K).astype(np.float32)
    return Inputs(Features(None, {"features": xtr}, None, {"features": xte}, w, b), ytr, yte, K)


def section(inputs, forget):
    return evaluators.get("collapse").evaluate(inputs, forget)


def np_misalignment(h, y, k, w):
    """NumPy transcription: mean_c [1 - cos(mu_c - mu_G, w_c)], float64."""
    h, w = np.asarray(h, np.float64), np.asarray(w, np.float64)
    m = np.stack([h[y == c].mean(0) for c in range(k)]) - h.mean(0)
    return 1.0 - np.sum(m * w, 1) / (np.linalg.norm(m, axis=1) * np.linalg.norm(w, axis=1))


@pytest.mark.parametrize("fc", [(2,), (1, 3)])
def test_entries_equal_direct_calls(fc):
    inp = mixture()
    f = inp.features
    xtr, xte = f.train_feats["features"], f.test_feats["features"]
    got = section(inp, ForgetSet.from_classes(inp.train_labels, inp.test_labels, fc))
    want = collapse_lib.authors_metrics(xtr, inp.train_labels, K, f.weights, list(fc))
    assert got["authors"].keys() == want.keys() and got["authors"]["nc1_retain"] is not None
    for key, v in want.items():
        assert (got["authors"][key] is None) if v is None else got["authors"][key] == pytest.approx(v, rel=1e-6), key
    assert got["ncc_train"] == collapse_lib.ncc_train_accuracy(xtr, inp.train_labels, K, list(fc))
    # test_misalignment: all = collapse.misalignment of the test features; retain / forget in the
    # conventions of collapse_metrics' retain / forget dicts (here on the test features)
    tm, ref = got["test_misalignment"], collapse_lib.collapse_metrics(xte, inp.test_labels, K, f.weights, None, fc)
    assert tm["all"] == pytest.approx(float(collapse_lib.misalignment(xte, inp.test_labels, K, f.weights)), abs=1e-5)
    assert tm["retain"] == pytest.approx(ref["retain"]["misalignment"], abs=1e-5)
    assert tm["forget"] == pytest.approx(ref["forget"]["misalignment"], abs=1e-5)
    per = np_misalignment(xte, inp.test_labels, K, f.weights)
    assert tm["all"] == pytest.approx(per.mean(), abs=1e-5) and tm["forget"] == pytest.approx(per[list(fc)].mean(), abs=1e-5)
    # the existing entries are unchanged
    base = collapse_lib.collapse_metrics(xtr, inp.train_labels, K, f.weights, f.bias, fc)
    assert got["nc1"] == pytest.approx(base["nc1"], rel=1e-6)
    assert got["forget"]["misalignment"] == pytest.approx(base["forget"]["misalignment"], rel=1e-6)


def test_exact_simplex_etf():
    """Every training sample on its class's simplex-ETF vertex, a self-dual classifier W = M:
    the authors' NC1 and NC3 (Zhu) vanish, NCC on the training features is 100 %, and the test
    misalignment is 0."""
    etf = (np.eye(K) - 1.0 / K) * np.sqrt(K / (K - 1.0))            # [K, K], unit rows, mean 0
    basis = np.linalg.qr(np.random.default_rng(1).normal(size=(D, K)))[0]  # [D, K] orthonormal
    m = (etf @ basis.T).astype(np.float32)                               # [K, D]
    ytr, yte = np.arange(N) % K, np.arange(M) % K
    inp = Inputs(Features(None, {"features": m[ytr]}, None, {"features": m[yte]}, m, None), ytr, yte, K)
    got = section(inp, ForgetSet.from_classes(ytr, yte, [4]))
    a = got["authors"]
    for key in ("nc1_all", "nc1_retain", "nc1_forget", "nc2_all", "nc3_zhu"):
        assert a[key] == pytest.approx(0.0, abs=1e-4), key
    assert got["ncc_train"] == {"retain": 1.0, "forget": 1.0, "all": 1.0}
    assert got["test_misalignment"]["all"] == pytest.approx(0.0, abs=1e-6)
    assert got["test_misalignment"]["forget"] == pytest.approx(0.0, abs=1e-6)


def test_sample_forgetting_and_no_classifier():
    inp = mixture(1)
    fs = ForgetSet.from_indices(N, M, np.arange(0, N, 7))
    got = section(inp, fs)
    a = got["authors"]
    assert a["nc1_all"] is not None and a["nc1_retain"] is None and a["nc1_forget"] is None
    assert got["ncc_train"]["forget"] is None and got["ncc_train"]["all"] is not None
    tm = got["test_misalignment"]
    assert tm["retain"] is None and tm["forget"] is None
    assert tm["all"] == pytest.approx(np_misalignment(inp.features.test_feats["features"], inp.test_labels, K,
                                                      inp.features.weights).mean(), abs=1e-5)
    bare = section(inp._replace(features=inp.features._replace(weights=None, bias=None)), fs)
    assert "test_misalignment" not in bare and "nc3_zhu" not in bare["authors"]


def test_a_class_without_test_samples_is_left_out():
    inp = mixture(2)
    keep = inp.test_labels != 0
    inp = inp._replace(test_labels=inp.test_labels[keep],
                       features=inp.features._replace(test_feats={"features": inp.features.test_feats["features"][keep]}))
    tm = split_misalignment(inp.features.test_feats["features"], inp.test_labels, K, inp.features.weights, [2])
    h, y = inp.features.test_feats["features"].astype(np.float64), inp.test_labels
    m = np.stack([h[y == c].mean(0) - h.mean(0) for c in range(1, K)])
    w = inp.features.weights[1:].astype(np.float64)
    per = 1 - np.sum(m * w, 1) / (np.linalg.norm(m, axis=1) * np.linalg.norm(w, axis=1))
    assert tm["all"] == pytest.approx(per.mean(), abs=1e-5) and tm["forget"] == pytest.approx(per[1], abs=1e-5)
    with pytest.raises(ValueError, match="weights"):
        split_misalignment(h, y, K, inp.features.weights[:, :3])


def test_columns_are_produced_and_unique():
    inp = mixture()
    ev = evaluators.get("collapse")
    for fs in (ForgetSet.from_classes(inp.train_labels, inp.test_labels, [2]), ForgetSet.from_indices(N, M, [0, 5])):
        cols = list(ev.columns(section(inp, fs)))
        keys = [(h, s, c) for h, s, c, _ in cols]
        assert len(keys) == len(set(keys))
        names = {c for h, s, c, _ in cols if s == "all"}
        assert {"authors_nc1_all", "authors_cdnv_all", "authors_nc3_zhu", "ncc_train_all", "test_misalignment_all",
                "misalignment", "nc1"} <= names
        if fs.classes:
            assert {"authors_nc1_retain", "authors_nc1_forget", "authors_delta_forget", "ncc_train_forget",
                    "test_misalignment_retain", "test_misalignment_forget"} <= names
        assert all(isinstance(x, float) for *_, x in cols)
