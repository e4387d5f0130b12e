"""--seeds through the command line: train, unlearn and evaluate N seeds with one command each;
every seed's run equals the single-seed command's, and the statistics equal NumPy's."""

import json

import jax
import numpy as np
import pytest
from scipy import stats

from jaxunlearn import cli, report, runs


def _params(workdir):
    return runs.load_run(workdir).state.params


def _maxdiff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    common = ["--dataset", "digits", "--model", "mlp", "--epochs", "4", "--no-progress"]
    assert cli.main(["train", *common, "--seeds", "0,2,5", "--strategy", "vmap", "--workdir", str(root / "orig")]) == 0
    assert cli.main(["train", *common, "--seed", "2", "--workdir", str(root / "orig2")]) == 0
    assert cli.main(["unlearn", "--from", str(root / "orig"), "--method", "random_label", "--forget", "3",
                     "--seeds", "0,2,5", "--workdir", str(root / "rl"), "--no-progress"]) == 0
    assert cli.main(["unlearn", "--from", str(root / "orig2"), "--method", "random_label", "--forget", "3",
                     "--seed", "2", "--workdir", str(root / "rl2"), "--no-progress"]) == 0
    return root


def test_train_seeds_writes_one_run_per_seed_equal_to_single_seed_runs(seeded):
    info = json.loads((seeded / "orig" / "seeds.json").read_text())
    assert info["seeds"] == [0, 2, 5] and info["strategy"] == "vmap" and info["strategy_reason"]
    for s in (0, 2, 5):
        summary = json.loads((seeded / "orig" / f"seed-{s}" / "summary.json").read_text())
        assert summary["seed"] == s and summary["test_accuracy"] > 0.8
        assert json.loads((seeded / "orig" / f"seed-{s}" / "run.json").read_text())["seed"] == s
    # the vmapped seed 2 is the model `train --seed 2` trains
    assert _maxdiff(_params(seeded / "orig" / "seed-2"), _params(seeded / "orig2")) < 1e-5
    assert _maxdiff(_params(seeded / "orig" / "seed-0"), _params(seeded / "orig" / "seed-5")) > 1e-2


def test_unlearn_seeds_pairs_each_seed_with_its_original(seeded):
    info = json.loads((seeded / "rl" / "seeds.json").read_text())
    assert info["seeds"] == [0, 2, 5] and info["strategy"] in ("vmap", "loop") and "measured" in info["strategy_reason"]
    run2 = json.loads((seeded / "rl" / "seed-2" / "run.json").read_text())
    assert run2["from"].endswith("seed-2") and run2["seed"] == 2
    assert _maxdiff(_params(seeded / "rl" / "seed-2"), _params(seeded / "rl2")) < 1e-5
    for s in (0, 2, 5):
        assert json.loads((seeded / "rl" / f"seed-{s}" / "summary.json").read_text())["forget_accuracy"] <= 0.1


def test_evaluate_seeds_reports_statistics_over_seeds_and_a_long_csv(seeded):
    out = seeded / "eval.json"
    assert cli.main(["evaluate", str(seeded / "rl"), "--seeds", "all", "--no-relearn", "--json", str(out),
                     "--original", str(seeded / "orig")]) == 0
    r = json.loads(out.read_text())
    assert r["seeds"] == [0, 2, 5] and set(r["per_seed"]) == {"0", "2", "5"}
    for head in ("full", "lp", "ncc"):
        vals = [r["per_seed"][s][head]["forget"] for s in ("0", "2", "5")]
        cell = r["summary"][head]["forget"]
        assert cell["mean"] == pytest.approx(np.mean(vals)) and cell["std"] == pytest.approx(np.std(vals, ddof=1))
        assert cell["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std(vals, ddof=1) / np.sqrt(3))
    recs = report.read_long_csv(seeded / "eval.csv")
    lp = {r["seed"]: r["accuracy"] for r in recs if r["head"] == "lp" and r["split"] == "forget"}
    assert lp == {int(s): pytest.approx(r["per_seed"][s]["lp"]["forget"]) for s in ("0", "2", "5")}
    assert {r["method"] for r in recs} == {"random_label"} and {r["forget_set"] for r in recs} == {"f3"}
    assert "similarity" in r["per_seed"]["0"]  # seed s compared with seed s's original


def test_seed_refusals(seeded, capsys):
    base = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--no-progress"]
    for seeds, msg in (("a-b", "--seeds expects"), ("3-1", "--seeds expects"), ("1,1", "twice")):
        assert cli.main([*base, "--seeds", seeds, "--workdir", str(seeded / "bad")]) == 2
        assert msg in capsys.readouterr().err
    assert not (seeded / "bad").exists()
    # a finished multi-seed run is not overwritten
    assert cli.main([*base, "--seeds", "0,2,5", "--workdir", str(seeded / "orig")]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    # seeds the source does not have
    assert cli.main(["unlearn", "--from", str(seeded / "orig"), "--method", "random_label", "--forget", "3",
                     "--seeds", "1", "--workdir", str(seeded / "bad"), "--no-progress"]) == 2
    assert "not [1]" in capsys.readouterr().err
    assert cli.main(["evaluate", str(seeded / "rl2"), "--seeds", "all", "--json", str(seeded / "x.json")]) == 2
    assert "not a multi-seed workdir" in capsys.readouterr().err
