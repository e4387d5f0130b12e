"""Sample forgetting end to end through the command line: train -> unlearn --forget 0.1 ->
evaluate, checked against NumPy computations from the saved model's logits and features."""

import json

import numpy as np
import pytest

from jaxunlearn import cli, data as data_lib, privacy, runs, train


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    assert cli.main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "8", "--workdir",
                     str(root / "orig"), "--no-progress"]) == 0
    assert cli.main(["unlearn", "--from", str(root / "orig"), "--method", "random_label", "--forget", "0.1",
                     "--seed", "4", "--workdir", str(root / "rl"), "--no-progress"]) == 0
    assert cli.main(["evaluate", str(root / "rl"), "--relearn-samples", "10", "--json", str(root / "eval.json")]) == 0
    return root, json.loads((root / "eval.json").read_text())


def _saved(root):
    """The saved model's logits and features on both splits (the model's own forward pass) and
    the forgotten indices drawn as the run drew them (seed 4, over the whole training split)."""
    run = runs.load_run(root / "rl")
    ds = data_lib.whole_training_set(run.dataset)  # unlearning and evaluation use every training row
    predict = train.make_predict(run.net, 1000)
    out = {}
    for split, images in (("train", ds.train_images), ("test", ds.test_images)):
        logits, feats = predict(run.state.params, run.state.batch_stats, images)
        out[split] = (np.asarray(logits, np.float64), np.asarray(feats["features"], np.float64))
    idx = data_lib.forget_split(ds, data_lib.ForgetSpec((), 0.1, 4)).train_forget
    return ds, out, idx


def test_run_stores_the_forget_set(sample_run):
    root, _ = sample_run
    info = json.loads((root / "rl" / "run.json").read_text())
    spec = info["forget_spec"]
    assert spec["kind"] == "samples" and spec["fraction"] == 0.1 and spec["seed"] == 4
    assert spec["num_forget"] == round(0.1 * spec["num_train"])
    summary = json.loads((root / "rl" / "summary.json").read_text())
    assert summary["forget_accuracy"] is not None  # the forgotten samples' accuracy, not n/a


def test_evaluate_reports_every_head_on_the_forgotten_samples(sample_run):
    root, r = sample_run
    for head in ("full", "lp", "ncc", "knn"):
        for split in ("train_forget", "train_retain", "retain", "all"):
            assert 0.0 <= r[head][split] <= 1.0, (head, split)
        assert r[head]["forget"] is None and r[head]["retain"] == r[head]["all"]  # no test forget samples
    assert 0.0 <= r["privacy"]["mia_efficacy"] <= 1.0 and "loss_attack" in r["privacy"]
    assert set(r["relearn"]) == {"10"} and "collapse" in r and r["collapse"].get("forget") is None
    assert r["run"]["forget_classes"] == [] and r["run"]["forget_set"]["kind"] == "samples"


def test_forget_accuracy_is_on_exactly_the_forgotten_indices(sample_run):
    root, r = sample_run
    ds, out, idx = _saved(root)
    (tr_logits, tr_feats), (te_logits, te_feats) = out["train"], out["test"]
    y = ds.train_labels
    forgotten = np.zeros(len(y), bool)
    forgotten[idx] = True
    assert r["run"]["forget_set"]["num_forget"] == len(idx)
    correct = tr_logits.argmax(1) == y
    assert r["full"]["train_forget"] == pytest.approx(correct[idx].mean(), abs=1e-12)
    assert r["full"]["train_retain"] == pytest.approx(correct[~forgotten].mean(), abs=1e-12)
    assert r["full"]["all"] == pytest.approx(np.mean(te_logits.argmax(1) == ds.test_labels), abs=1e-12)
    # NCC: class means of the retain training features, nearest mean (float64 NumPy)
    means = np.stack([tr_feats[~forgotten & (y == c)].mean(0) for c in range(ds.num_classes)])
    nearest = lambda x: np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), 1)
    tol = 1.0 / len(idx)  # one float32 / float64 near-tie at most
    assert r["ncc"]["train_forget"] == pytest.approx(np.mean(nearest(tr_feats[idx]) == y[idx]), abs=tol)
    assert r["ncc"]["all"] == pytest.approx(np.mean(nearest(te_feats) == ds.test_labels), abs=1.0 / len(te_feats))
    # MIA: members = retain training samples, non-members = every test sample, scored on the forgotten ones
    p_tr = privacy.true_class_confidence(tr_logits, y)
    p_te = privacy.true_class_confidence(te_logits, ds.test_labels)
    want = privacy.mia_efficacy(p_tr[~forgotten], p_te, p_tr[idx])
    assert r["privacy"]["mia_efficacy"] == pytest.approx(want, abs=1.5 / len(idx))
    # relearning: before the first step, the output's accuracy on the forgotten samples outside the attack set
    rng = np.random.default_rng(0)
    attacked = rng.choice(idx, size=10, replace=False)
    rest = np.setdiff1d(idx, attacked)
    curve = r["relearn"]["10"]
    assert curve["steps"][0] == 0 and (curve["num_forget"], curve["num_retain"]) == (10, 10 * ds.num_classes)
    assert curve["full"][0] == pytest.approx(correct[rest].mean(), abs=1e-12)
    assert curve["retain"][0] == pytest.approx(r["full"]["all"], abs=1e-12)


def test_evaluate_forget_option_and_refusals(sample_run, capsys):
    root, r = sample_run
    # a train run has no forget set: refused with one line naming the fix
    assert cli.main(["evaluate", str(root / "orig"), "--json", str(root / "x.json"), "--no-relearn"]) == 2
    err = capsys.readouterr().err
    assert "is not an unlearning run with a stored forget set; pass --forget" in err and err.count("\n") == 1
    assert cli.main(["evaluate", str(root / "rl"), "--relearn-samples", "0", "--json", str(root / "y.json")]) == 2
    assert "--relearn-samples takes positive counts" in capsys.readouterr().err
    # --forget FRACTION --forget-seed S on the original model: the same samples as the run's
    assert cli.main(["evaluate", str(root / "orig"), "--forget", "0.1", "--forget-seed", "4", "--no-relearn",
                     "--json", str(root / "orig.json")]) == 0
    o = json.loads((root / "orig.json").read_text())
    assert o["run"]["forget_set"] == r["run"]["forget_set"]
    assert "relearn" not in o and o["lp"]["train_forget"] is not None
