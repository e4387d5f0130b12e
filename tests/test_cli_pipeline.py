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
    # the forget set is data: stored by unlearn, read back by evaluate
    assert json.loads((pipeline / "rl" / "run.json").read_text())["forget_spec"] == {"kind": "classes", "classes": [3]}
    assert r["run"]["forget_set"] == {"kind": "classes", "classes": [3]} and r["run"]["forget_classes"] == [3]
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


def _unlearn(pipeline, name, *argv):
    return cli.main(["unlearn", "--from", str(pipeline / "orig"), "--forget", "3", "--workdir", str(pipeline / name),
                     "--no-progress", *argv])


def test_unlearn_refuses_bad_options_before_writing(pipeline, capsys):
    """A misspelt name, a wrong type or a value out of range: one line naming the valid options, no workdir."""
    for argv, msg in [(["--method", "neggrad_plus", "--set", "forget_wieght=0.5"],
                       "neggrad_plus has no hyper-parameter or option 'forget_wieght'; it has hyper-parameters lr, "
                       "forget_weight, clip; options epochs,"),
                      (["--method", "unsir", "--set", "per_class=500.5"], "per_class is an integer"),
                      (["--method", "gradient_ascent", "--set", "until_wrong=maybe"], "until_wrong is a boolean"),
                      (["--method", "random_label", "--set", "label_pool=none"], "label_pool must be one of retain, all"),
                      (["--method", "scrub", "--set", "msteps=-1"], "msteps must be >= 0"),
                      (["--method", "random_label", "--lr", "-0.1"], "lr must be finite and > 0"),
                      (["--method", "random_label", "--lr", "nan"], "lr must be finite and > 0"),
                      (["--method", "random_label", "--epochs", "0"], "epochs must be >= 1"),
                      (["--method", "svd", "--epochs", "2"], "svd does not use --epochs; it has hyper-parameters "
                                                            "alpha_r, alpha_f; options samples, chunk")]:
        assert _unlearn(pipeline, "bad-option", *argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err, (argv, err)
        assert err.count("\n") == 1 and err.startswith("error: "), err
    assert not (pipeline / "bad-option").exists()


def test_unlearn_typed_set_values(pipeline):
    """``--set until_wrong=False`` is False and ``--set per_class=500`` an int, through to run.json."""
    assert _unlearn(pipeline, "ga-plain", "--method", "gradient_ascent", "--epochs", "1",
                    "--set", "until_wrong=False") == 0
    info = json.loads((pipeline / "ga-plain" / "run.json").read_text())
    assert dict(info["settings"]["options"])["until_wrong"] is False
    assert _unlearn(pipeline, "unsir-500", "--method", "unsir", "--set", "per_class=500",
                    "--set", "noise_steps=2") == 0
    info = json.loads((pipeline / "unsir-500" / "run.json").read_text())
    opts = dict(info["settings"]["options"])
    assert opts["per_class"] == 500 and isinstance(opts["per_class"], int) and opts["noise_steps"] == 2


def test_unlearn_records_the_preset(pipeline, monkeypatch):
    """The source run's dataset picks the preset; explicit values win; run.json says which was used."""
    info = json.loads((pipeline / "rl" / "run.json").read_text())
    assert info["preset"] == "digits"
    assert info["preset_overrides"] == {"hparams": {}, "settings": {}}  # digits: the method defaults
    from jaxunlearn.unlearn import presets
    monkeypatch.setitem(presets.PRESETS, "digits", {"random_label": ({"lr": 0.02}, {"epochs": 2})})
    assert _unlearn(pipeline, "rl-preset", "--method", "random_label", "--set", "label_pool=all") == 0
    info = json.loads((pipeline / "rl-preset" / "run.json").read_text())
    assert info["preset"] == "digits" and info["hparams"]["lr"] == 0.02 and info["settings"]["epochs"] == 2
    assert info["preset_overrides"] == {"hparams": {"lr": 0.02}, "settings": {"epochs": 2}}
    assert dict(info["settings"]["options"])["label_pool"] == "all"
    assert _unlearn(pipeline, "rl-explicit", "--method", "random_label", "--lr", "0.03", "--set", "epochs=1") == 0
    info = json.loads((pipeline / "rl-explicit" / "run.json").read_text())
    assert info["hparams"]["lr"] == 0.03 and info["settings"]["epochs"] == 1

