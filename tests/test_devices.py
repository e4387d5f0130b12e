"""Devices (issue 12, item 6): ``unlearn --devices N`` and ``evaluate --devices N``.

Batches are split over the mesh axis ``"data"``, the state and the data are replicated, so a
4-device run equals the 1-device run up to float rounding. The CLI runs in-process on the 4
virtual CPU devices that ``conftest.py`` sets up; the model is a digits MLP (2 epochs).
"""

import json
import math
import pathlib

import jax
import numpy as np
import pytest

from jaxunlearn import cli, evaluate, parallel, runs

TRAIN = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--seed", "0", "--no-progress"]


def main(*argv):
    return cli.main([str(a) for a in argv])


def leaves(workdir):
    state = runs.load_run(workdir).state
    return jax.tree.leaves((state.params, state.batch_stats))


def summary(workdir):
    return json.loads((pathlib.Path(workdir) / "summary.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    wd = tmp_path_factory.mktemp("devices") / "base"
    assert main(*TRAIN, "--workdir", wd) == 0
    return wd


UNLEARN_CASES = {"full": ["--method", "random_label"], "cmf": ["--method", "random_label", "--cmf"]}


@pytest.fixture(scope="module")
def unlearned(base, tmp_path_factory):
    """``{case: {devices: workdir}}`` for both cases, on 1 and on 4 devices."""
    root = tmp_path_factory.mktemp("unlearned")
    out = {}
    for case, argv in UNLEARN_CASES.items():
        out[case] = {}
        for n in (1, 4):
            wd = root / f"{case}-{n}"
            assert main("unlearn", "--from", base, *argv, "--forget", "3", "--batch-size", "128",
                        "--devices", n, "--workdir", wd, "--no-progress") == 0
            out[case][n] = wd
    return out


@pytest.mark.parametrize("case", list(UNLEARN_CASES))
def test_unlearn_on_four_devices_equals_one_device(unlearned, case):
    one, four = unlearned[case][1], unlearned[case][4]
    assert summary(one)["devices_used"] == 1 and summary(four)["devices_used"] == 4
    a, b = leaves(one), leaves(four)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)
    for key in ("retain_accuracy", "forget_accuracy", "test_accuracy"):
        assert summary(four)[key] == pytest.approx(summary(one)[key], abs=2e-3), key
    lines = lambda wd: [json.loads(s) for s in (wd / "metrics.jsonl").read_text().splitlines()]
    for r1, r4 in zip(lines(one), lines(four), strict=True):
        assert r4["loss"] == pytest.approx(r1["loss"], rel=1e-4, abs=1e-5)


def test_unlearn_changed_the_model(base, unlearned):
    """Guards the comparison above: both runs moved the parameters away from the original."""
    orig = leaves(base)
    for case in UNLEARN_CASES:
        for n in (1, 4):
            assert any(not np.allclose(x, y) for x, y in zip(orig, leaves(unlearned[case][n])))


def _numbers(tree, prefix=""):
    """Flattens a JSON tree to ``{path: number or None}`` (strings and booleans dropped)."""
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_numbers(v, f"{prefix}/{k}"))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.update(_numbers(v, f"{prefix}/{i}"))
    elif tree is None or (isinstance(tree, (int, float)) and not isinstance(tree, bool)):
        out[prefix] = tree
    return out


def test_evaluate_on_four_devices_equals_one_device(base, unlearned, tmp_path):
    wd = unlearned["full"][1]
    outs = {}
    for n in (1, 4):
        path = tmp_path / f"eval-{n}.json"
        assert main("evaluate", wd, "--original", base, "--json", path, "--no-relearn", "--devices", n) == 0
        outs[n] = _numbers({k: v for k, v in json.loads(path.read_text()).items() if k != "runtime_s"})
    assert outs[1].keys() == outs[4].keys() and len(outs[1]) > 20
    for key, v1 in outs[1].items():
        v4 = outs[4][key]
        if v1 is None:
            assert v4 is None, key
        else:
            assert math.isclose(v4, v1, rel_tol=1e-4, abs_tol=1e-4), (key, v1, v4)


def test_extract_split_over_devices_equals_one_device(base):
    """Batches that do not divide the data (the tail is padded) nor the devices (rounded up)."""
    run = runs.load_run(base)
    mesh = parallel.make_mesh(4)
    for head in ("linear", "cmf"):
        one = evaluate.extract(run.net, run.state, run.dataset, head, batch_size=250)
        four = evaluate.extract(run.net, run.state, run.dataset, head, batch_size=250, mesh=mesh)
        three = evaluate.extract(run.net, run.state, run.dataset, head, batch_size=250, mesh=parallel.make_mesh(3))
        for got in (four, three):
            assert got.train_logits.shape == one.train_logits.shape == (len(run.dataset.train_labels), 10)
            for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(got), strict=True):
                assert isinstance(b, np.ndarray)
                np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_unlearn_refuses_a_batch_that_does_not_split(base, tmp_path, capfd):
    capfd.readouterr()
    code = main("unlearn", "--from", base, "--method", "random_label", "--forget", "3", "--batch-size", "64",
                "--devices", "3", "--workdir", tmp_path / "u", "--no-progress")
    err = capfd.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "64 is not divisible by the 3 devices" in err, err
    assert "--batch-size a multiple of 3" in err
    assert not (tmp_path / "u").exists()


@pytest.mark.parametrize("argv,needle", [
    (["--devices", "0"], "--devices must be at least 1"),
    (["--devices", "8"], "only 4 are visible"),
])
def test_evaluate_refuses_bad_devices(base, tmp_path, capfd, argv, needle):
    capfd.readouterr()
    code = main("evaluate", base, "--forget", "3", "--json", tmp_path / "e.json", "--no-relearn", *argv)
    err = capfd.readouterr().err
    assert code == 2 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "e.json").exists()
