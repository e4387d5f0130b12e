"""train -> unlearn -> evaluate -> analyze through the command line, on digits."""

import json

import numpy as np
import pytest

from jaxunlearn import cli


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    assert cli.main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "20", "--workdir",
                     str(root / "orig"), "--no-progress"]) == 0
    assert cli.main(["unlearn", "--from", str(root / "orig"), "--method", "random_label", "--forget", "3",
                     "--workdir", str(root / "rl"), "--no-progress"]) == 0
    assert cli.main(["unlearn", "--from", str(root / "orig"), "--method", "retrain", "--forget", "3",
                     "--epochs", "20", "--workdir", str(root / "retrain"), "--no-progress"]) == 0
    return root


def test_unlearn_summary(pipeline):
    s = json.loads((pipeline / "rl" / "summary.json").read_text())
    orig = json.loads((pipeline / "orig" / "summary.json").read_text())
    assert s["forget_accuracy"] <= 0.10
    assert s["retain_accuracy"] >= orig["test_accuracy"] - 0.05
    assert s["runtime_s"] > 0 and s["method"] == "random_label"


def test_evaluate_writes_every_section(pipeline):
    out = pipeline / "eval.json"
    assert cli.main(["evaluate", str(pipeline / "rl"), "--original", str(pipeline / "orig"), "--retrained",
                     str(pipeline / "retrain"), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for head in ("full", "lp", "ncc", "knn"):
        assert 0.0 <= r[head]["retain"] <= 1.0 and 0.0 <= r[head]["forget"] <= 1.0
    assert r["full"]["forget"] <= 0.10
    # the illusion on digits: the features still separate the forgotten class
    assert r["lp"]["forget"] > 0.5
    for section in ("collapse", "privacy", "similarity", "relearn", "runtime_s"):
        assert section in r
    assert set(r["similarity"]) == {"original", "retrained"}
    assert set(r["relearn"]) == {"10", "100"}
    for k, curve in r["relearn"].items():  # before the first attack step: the model's own accuracies
        assert curve["steps"][0] == 0 and len(curve["retain"]) == len(curve["steps"])
        assert curve["full"][0] == pytest.approx(r["full"]["forget"], abs=1e-6)
        assert curve["retain"][0] == pytest.approx(r["full"]["retain"], abs=1e-6)
        # the attack set: k forget samples and k of each of the 9 retain classes
        assert (curve["num_forget"], curve["num_retain"]) == (int(k), 9 * int(k))
        # with retain samples in the set the attack does not collapse the model onto the class
        assert curve["retain"][-1] > 0.8
    assert "nc1" in r["collapse"] and "misalignment" in r["collapse"]
    # refuses to overwrite the JSON
    assert cli.main(["evaluate", str(pipeline / "rl"), "--json", str(out)]) == 2


def test_original_model_heads_agree_with_output(pipeline):
    """Sanity of the pipeline: LP and NCC of the original are within a few points of its output."""
    out = pipeline / "eval_orig.json"
    assert cli.main(["evaluate", str(pipeline / "orig"), "--forget", "3", "--no-relearn", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert abs(r["lp"]["all"] - r["full"]["all"]) < 0.05
    assert abs(r["ncc"]["all"] - r["full"]["all"]) < 0.06


def test_analyze_npz(pipeline, tmp_path):
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 16)) * 3
    ytr, yte = rng.integers(0, 4, 400), rng.integers(0, 4, 100)
    np.savez(tmp_path / "f.npz", train_features=means[ytr] + rng.normal(size=(400, 16)), train_labels=ytr,
             test_features=means[yte] + rng.normal(size=(100, 16)), test_labels=yte, forget_classes=np.array([1]))
    assert cli.main(["analyze", str(tmp_path / "f.npz"), "--json", str(tmp_path / "a.json")]) == 0
    r = json.loads((tmp_path / "a.json").read_text())
    for head in ("ncc", "lp", "knn"):
        assert r[head]["retain"] > 0.9 and r[head]["forget"] > 0.9
    assert r["collapse"]["nc1"] > 0


def test_unlearn_refuses_bad_input(pipeline, capsys):
    for argv, msg in [(["--method", "nope", "--forget", "3"], "unknown method 'nope'"),
                      (["--method", "random_label", "--forget", "10"], "outside"),
                      (["--method", "random_label", "--forget", "0,1,2,3,4,5,6,7,8,9"], "every class")]:
        rc = cli.main(["unlearn", "--from", str(pipeline / "orig"), *argv, "--workdir", str(pipeline / "bad"),
                       "--no-progress"])
        assert rc == 2 and msg in capsys.readouterr().err
    assert not (pipeline / "bad").exists()
