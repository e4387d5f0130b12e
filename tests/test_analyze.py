"""Feature-file validation, the analysis report, and atomic JSON writing."""

import json
import os

import numpy as np
import pytest

from jaxunlearn import analyze, collapse, heads


def _arrays(seed=0, n=240, m=120, d=10, k=4, with_weights=True, forget=(2,)):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 1.5
    ytr = np.arange(n) % k
    yte = np.arange(m) % k
    out = {
        "train_features": (centres[ytr] + rng.normal(size=(n, d))).astype(np.float32),
        "train_labels": ytr.astype(np.int32),
        "test_features": (centres[yte] + rng.normal(size=(m, d))).astype(np.float32),
        "test_labels": yte.astype(np.int64),
    }
    if with_weights:
        out["weights"] = centres.astype(np.float32)
        out["bias"] = np.zeros(k, np.float32)
    if forget is not None:
        out["forget_classes"] = np.asarray(forget, np.int64)
    return out


def _save(tmp_path, arrays, name="f.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_valid_file(tmp_path):
    a = _arrays()
    loaded = analyze.load_features_npz(_save(tmp_path, a))
    assert loaded["num_classes"] == 4
    assert loaded["forget_classes"].tolist() == [2]
    np.testing.assert_array_equal(loaded["train_labels"], a["train_labels"])
    bare = analyze.load_features_npz(_save(tmp_path, _arrays(with_weights=False, forget=None)))
    assert bare["weights"] is None and bare["forget_classes"] is None


def _without(key):
    a = _arrays()
    del a[key]
    return a


def _with(**changes):
    a = _arrays()
    a.update(changes)
    return a


_nan_features = _arrays()["train_features"].copy()
_nan_features[3, 4] = np.nan

MALFORMED = {
    "missing train_features": (_without("train_features"), "missing key 'train_features'"),
    "missing test_labels": (_without("test_labels"), "missing key 'test_labels'"),
    "label count": (_with(train_labels=np.zeros(239, np.int32)), "train_labels has 239"),
    "test dim": (_with(test_features=np.zeros((120, 9), np.float32)), "test_features has dim 9"),
    "weights dim": (_with(weights=np.zeros((4, 3), np.float32)), "weights has shape"),
    "bias shape": (_with(bias=np.zeros(5, np.float32)), "bias has shape"),
    "nan": (_with(train_features=_nan_features), "train_features has 1 non-finite"),
    "inf weights": (_with(weights=np.full((4, 10), np.inf, np.float32)), "weights has 40 non"),
    "single class": (_with(train_labels=np.zeros(240, np.int32)), "fewer than 2 classes"),
    "rank": (_with(train_features=np.zeros(240, np.float32)), "train_features must be 2-d"),
    "float labels": (_with(test_labels=np.full(120, 0.5)), "test_labels has non-integer"),
    "forget range": (_with(forget_classes=np.array([9])), "forget_classes"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_load_refuses_malformed(tmp_path, case):
    arrays, message = MALFORMED[case]
    with pytest.raises(ValueError, match=message):
        analyze.load_features_npz(_save(tmp_path, arrays))


def test_load_refuses_object_arrays(tmp_path):
    path = tmp_path / "obj.npz"
    a = _arrays()
    a["forget_classes"] = np.array([[1], "x"], dtype=object)
    np.savez(path, **a)
    with pytest.raises(ValueError, match="forget_classes"):
        analyze.load_features_npz(path)


def test_analyze_features_report(tmp_path):
    a = analyze.load_features_npz(_save(tmp_path, _arrays()))
    out = analyze.analyze_features(a, probe="fast")
    for head in ("ncc", "lp", "knn"):
        assert 0.0 <= out[head]["retain"] <= 1.0 and 0.0 <= out[head]["forget"] <= 1.0
    # The numbers are those of the heads and collapse modules.
    ncc = heads.ncc_predict(heads.ncc_fit(a["train_features"], a["train_labels"], 4),
                            a["test_features"])
    assert out["ncc"] == heads.split_accuracy(np.asarray(ncc), a["test_labels"], [2])
    want = collapse.collapse_metrics(a["train_features"], a["train_labels"], 4, a["weights"],
                                     a["bias"], [2])
    for name in ("nc1", "nc2_equinorm", "nc2_etf_distance", "nc3_self_duality",
                 "nc4_ncc_disagreement", "misalignment"):
        assert out["collapse"][name] == pytest.approx(want[name], rel=1e-6)
    assert out["runtime_s"] > 0 and out["forget_classes"] == [2]
    # Without forget classes: forget is None and retain is the overall accuracy.
    bare = dict(a, forget_classes=None, weights=None, bias=None)
    out2 = analyze.analyze_features(bare, knn=False)
    assert out2["ncc"]["forget"] is None and out2["ncc"]["retain"] == out2["ncc"]["all"]
    assert "misalignment" not in out2["collapse"] and "knn" not in out2
    # The report is strict JSON.
    analyze.write_json_atomic(tmp_path / "report.json", out)
    assert json.loads((tmp_path / "report.json").read_text())["ncc"] == out["ncc"]


def test_analyze_forget_indices(tmp_path):
    """Sample forgetting from an .npz: heads fitted on the other training rows and scored on the
    forgotten ones (NCC against sklearn's NearestCentroid on exactly those rows)."""
    from sklearn.neighbors import NearestCentroid
    a = _arrays(forget=None)
    idx = np.array([7, 3, 100, 3, 201, 55])
    a["forget_indices"] = idx
    loaded = analyze.load_features_npz(_save(tmp_path, a))
    assert loaded["forget_indices"].tolist() == [3, 7, 55, 100, 201] and loaded["forget_classes"] is None
    out = analyze.analyze_features(loaded, knn=False)
    keep = np.setdiff1d(np.arange(len(a["train_labels"])), idx)
    ref = NearestCentroid().fit(a["train_features"][keep].astype(np.float64), a["train_labels"][keep])
    fi = np.unique(idx)
    want = np.mean(ref.predict(a["train_features"][fi].astype(np.float64)) == a["train_labels"][fi])
    assert out["ncc"]["train_forget"] == pytest.approx(want)
    assert out["ncc"]["forget"] is None and out["num_forget_samples"] == 5
    assert set(out["lp"]) == {"retain", "forget", "all", "train_retain", "train_forget"}
    with pytest.raises(ValueError, match="not both"):
        analyze.validate_features({**a, "forget_classes": np.array([1])})
    with pytest.raises(ValueError, match="forget_indices go up to 240"):
        analyze.validate_features({**a, "forget_indices": np.array([240])})


def test_write_json_atomic(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    obj = {"a": float("nan"), "b": np.float32(1.5), "c": np.arange(3), "d": (np.int64(2), None),
           "e": {"f": float("inf"), "g": True}}
    analyze.write_json_atomic(path, obj)
    assert json.loads(path.read_text()) == {"a": None, "b": 1.5, "c": [0, 1, 2], "d": [2, None],
                                            "e": {"f": None, "g": True}}
    assert os.listdir(tmp_path) == ["out.json"]  # no temporary file left behind
    with pytest.raises(TypeError):
        analyze.write_json_atomic(path, {"x": object()})
    assert json.loads(path.read_text())["b"] == 1.5  # the old file survives a failed write
    assert os.listdir(tmp_path) == ["out.json"]


def test_cli_analyze_runs_the_authors_probe_protocols(tmp_path):
    """``analyze --probe paper-cifar100`` (150 epochs, patience 40) reports the probe that
    ``analyze_features`` computes with that protocol; an unknown probe is refused before any
    file is written."""
    from jaxunlearn import cli
    path = _save(tmp_path, _arrays())
    got = {}
    for probe in ("paper-cifar10", "paper-cifar100"):
        out = tmp_path / f"{probe}.json"
        assert cli.main(["analyze", str(path), "--json", str(out), "--probe", probe]) == 0
        got[probe] = json.loads(out.read_text())
        assert got[probe]["probe"] == probe
        want = analyze.analyze_features(analyze.load_features_npz(path), probe=probe)
        assert got[probe]["lp"] == pytest.approx(want["lp"], abs=1e-12)
    with pytest.raises(SystemExit):
        cli.main(["analyze", str(path), "--json", str(tmp_path / "x.json"), "--probe", "lbfgs"])
    assert not (tmp_path / "x.json").exists()
