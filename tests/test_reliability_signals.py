"""Reliability (issue 7), part 2: divergence, interruption and resume, determinism, devices.

Real signals go to real ``jaxunlearn`` processes; everything else runs in-process. Runs are
digits + MLP with few epochs, so the whole file takes well under two minutes on two cores.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxunlearn import checkpoint, cli, data as data_lib, runs, train
from jaxunlearn.state import tree_equal
from helpers import StopAfter

EXE = str(pathlib.Path(sys.executable).parent / "jaxunlearn")
TRAIN = ["train", "--dataset", "digits", "--model", "mlp", "--seed", "0", "--no-progress"]
RESUMABLE = [*TRAIN, "--epochs", "3", "--checkpoint-every", "5"]


def main(*argv):
    return cli.main([str(a) for a in argv])


def params_of(workdir):
    run = runs.load_run(workdir)
    return run.state.params, run.state.batch_stats


def summary_of(workdir):
    return json.loads((pathlib.Path(workdir) / "summary.json").read_text())


def epochs_logged(workdir):
    return [json.loads(line)["epoch"] for line in (pathlib.Path(workdir) / "metrics.jsonl").open()]


def wait_for(predicate, proc, timeout=180.0):
    t0 = time.monotonic()
    while not predicate():
        assert proc.poll() is None, f"the process ended before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "timed out waiting for the run to make progress"
        time.sleep(0.05)


def saved_steps(ck_dir):
    return [int(p.name) for p in ck_dir.iterdir() if p.name.isdigit()] if ck_dir.is_dir() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of RESUMABLE; also the source of the unlearning tests."""
    wd = tmp_path_factory.mktemp("sig") / "reference"
    assert main(*RESUMABLE, "--workdir", wd) == 0
    return wd


# ----------------------------------------------------------------------------- interruption

def test_sigint_then_resume_equals_uninterrupted(reference, tmp_path, capfd):
    wd = tmp_path / "run"
    argv = [*RESUMABLE, "--workdir", str(wd)]
    proc = subprocess.Popen([EXE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: saved_steps(wd / "checkpoints"), proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "run the same command again" in err and "Traceback" not in err
    assert not (wd / "summary.json").exists() and not (wd / "model").exists()
    step = checkpoint.latest_step(wd / "checkpoints")
    total = 3 * train.steps_per_epoch(len(data_lib.load_dataset("digits").train_labels), 64)
    assert step is not None and 0 < step < total and step % 5 == 0

    capfd.readouterr()
    assert main(*argv) == 0
    assert "resuming the unfinished run" in capfd.readouterr().out
    assert tree_equal(params_of(wd), params_of(reference))
    assert summary_of(wd)["test_accuracy"] == summary_of(reference)["test_accuracy"]
    assert epochs_logged(wd) == [1, 2, 3]  # each epoch logged once


def test_interrupt_at_epoch_boundary_keeps_the_best_epoch(digits, tmp_path):
    """A stop that arrives as an epoch ends is honoured only after that epoch's validation and
    early-stopping bookkeeping, so the resumed run picks the same best epoch and parameters."""
    recipe = runs.recipe_for("digits", "mlp", epochs=3)
    spe = train.steps_per_epoch(len(digits.train_labels), recipe.batch_size)
    _, ref, ref_info = runs.train_model(digits, "mlp", recipe, 0, tmp_path / "ref", progress=False)
    with pytest.raises(runs.Interrupted):
        runs.train_model(digits, "mlp", recipe, 0, tmp_path / "cut", progress=False, stop=StopAfter(0))
    assert checkpoint.latest_step(tmp_path / "cut" / "checkpoints") == spe
    assert epochs_logged(tmp_path / "cut") == [1]  # epoch 1 was validated before stopping
    _, resumed, info = runs.train_model(digits, "mlp", recipe, 0, tmp_path / "cut", progress=False)
    assert info["best_epoch"] == ref_info["best_epoch"]
    assert tree_equal(resumed.params, ref.params)
    assert epochs_logged(tmp_path / "cut") == [1, 2, 3]


def test_sigterm_stops_unlearn_without_saving(reference, tmp_path):
    wd = tmp_path / "u"
    proc = subprocess.Popen([EXE, "unlearn", "--from", str(reference), "--method", "finetune", "--forget", "3",
                             "--epochs", "1000", "--workdir", str(wd), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = wd / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.stat().st_size > 0, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "nothing was saved" in err and "Traceback" not in err
    assert not (wd / "summary.json").exists() and not (wd / "model").exists()


def test_unlearn_is_deterministic_and_a_rerun_after_interruption_starts_over(reference, tmp_path, monkeypatch,
                                                                             capfd):
    argv = ["unlearn", "--from", reference, "--method", "finetune", "--forget", "3", "--epochs", "2",
            "--no-progress"]
    assert main(*argv, "--workdir", tmp_path / "a") == 0

    class TripAtOnce(runs.StopFlag):
        def __call__(self):
            return True

    with monkeypatch.context() as m:
        m.setattr(runs, "StopFlag", TripAtOnce)
        capfd.readouterr()
        assert main(*argv, "--workdir", tmp_path / "b") == 130
        assert "nothing was saved" in capfd.readouterr().err
    assert not (tmp_path / "b" / "model").exists() and not (tmp_path / "b" / "summary.json").exists()
    assert main(*argv, "--workdir", tmp_path / "b") == 0  # the same command: starts over
    assert tree_equal(params_of(tmp_path / "a"), params_of(tmp_path / "b"))
    sa, sb = summary_of(tmp_path / "a"), summary_of(tmp_path / "b")
    for k in ("retain_accuracy", "forget_accuracy", "test_accuracy"):
        assert sa[k] == sb[k]
    assert epochs_logged(tmp_path / "b") == [1, 2]  # the interrupted try's log was reset


# ----------------------------------------------------------------------------- divergence

def test_train_divergence_stops_with_the_step_and_keeps_finite_checkpoints(tmp_path, capfd):
    wd = tmp_path / "d"
    capfd.readouterr()
    assert main(*TRAIN, "--epochs", "1", "--lr", "20", "--checkpoint-every", "1", "--workdir", wd) == 3
    err = capfd.readouterr().err
    m = re.fullmatch(r"error: diverged: non-finite loss or parameters at step (\d+) \(epoch 1\); "
                     r"the last finite state is kept\n", err)
    assert m, err
    bad = int(m.group(1))
    last = checkpoint.latest_step(wd / "checkpoints")
    assert last is not None and 1 <= last <= bad
    template = train.init_state(runs.make_net(data_lib.load_dataset("digits"), "mlp"), jax.random.key(0),
                                (8, 8, 1), train.OptimConfig())
    state, _ = checkpoint.restore(wd / "checkpoints", template)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
    assert int(state.step) == last
    assert not (wd / "summary.json").exists() and not (wd / "model").exists()


def test_unlearn_divergence_exits_3_and_saves_nothing(reference, tmp_path, capfd):
    wd = tmp_path / "ga"
    capfd.readouterr()
    assert main("unlearn", "--from", reference, "--method", "gradient_ascent", "--lr", "1e6", "--batch-size",
                "8", "--forget", "3", "--workdir", wd, "--no-progress") == 3
    err = capfd.readouterr().err
    assert re.fullmatch(r"error: diverged: non-finite loss or parameters at step \d+ \(epoch \d+\); .*\n", err), err
    assert not (wd / "summary.json").exists() and not (wd / "model").exists()


# ----------------------------------------------------------------------------- a killed study

TINY_STUDY = [sys.executable, str(pathlib.Path(__file__).with_name("tiny_study.py")),
              "reproduce", "table1", "--config", "tiny", "--no-progress", "--strategy", "loop", "--workdir"]


def test_study_killed_twice_resumes_to_the_same_table(tmp_path):
    """A real SIGTERM while the original model trains, a real SIGINT while a model is being
    evaluated; each re-run of the same command resumes, and the final table equals the table of
    an uninterrupted run."""
    ref = tmp_path / "reference"
    r = subprocess.run([*TINY_STUDY, str(ref)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    wd = tmp_path / "killed"
    for sig, ready in ((signal.SIGTERM, lambda: saved_steps(wd / "models" / "original-s0-ckpt" / "checkpoints")),
                       (signal.SIGINT, lambda: any((wd / "evals").glob("*.json")))):
        proc = subprocess.Popen([*TINY_STUDY, str(wd)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(ready, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 130, err
        assert "run the same command again to resume" in err and "Traceback" not in err, err
        assert not [p for p in wd.rglob(".*.json.*")], "a half-written results file was left behind"
    r = subprocess.run([*TINY_STUDY, str(wd)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    def table(d):  # every number but the wall-clock run times
        t = json.loads((d / "table1" / "table1.json").read_text())
        return {**t, "rows": [{k: v for k, v in row.items() if k != "runtime_s"} for row in t["rows"]]}
    assert table(wd) == table(ref)
    assert [r["name"] for r in table(wd)["rows"]] == ["Original", "Retrain", "random_label"]
    log = (wd / "study.log").read_text()
    assert log.count("built original") <= 1  # never trained twice across the three processes


# ----------------------------------------------------------------------------- determinism

@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("det") / "one"
    assert main(*TRAIN, "--epochs", "2", "--workdir", wd) == 0
    return wd


def test_train_twice_same_seed_is_bitwise_identical(short_run, tmp_path):
    assert main(*TRAIN, "--epochs", "2", "--workdir", tmp_path / "two") == 0
    assert tree_equal(params_of(short_run), params_of(tmp_path / "two"))
    assert summary_of(short_run)["test_accuracy"] == summary_of(tmp_path / "two")["test_accuracy"]
    drop_time = lambda wd: [{k: v for k, v in json.loads(line).items() if k != "time_s"}
                            for line in (wd / "metrics.jsonl").open()]
    assert drop_time(short_run) == drop_time(tmp_path / "two")


def test_four_devices_match_one_device(short_run, tmp_path):
    """``--devices 4`` end to end, in a fresh process with no forced device count (cli.main asks
    JAX for 4 CPU devices before the backend starts)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if not f.startswith("--xla_force_host_platform_device_count"))
    wd = tmp_path / "four"
    r = subprocess.run([EXE, *TRAIN, "--epochs", "2", "--devices", "4", "--workdir", str(wd)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    one, four = summary_of(short_run), summary_of(wd)
    assert four["devices_used"] == 4 and one["devices_used"] == 1
    assert abs(four["test_accuracy"] - one["test_accuracy"]) <= 0.01
    assert four["best_epoch"] == one["best_epoch"]
    for a, b in zip(jax.tree.leaves(params_of(short_run)), jax.tree.leaves(params_of(wd))):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
