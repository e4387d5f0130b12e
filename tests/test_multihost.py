"""Hosts (issue 12, item 7): a multi-process run, simulated by processes on one machine.

Two real ``jaxunlearn`` processes on 127.0.0.1 (a random free port), each with 2 virtual CPU
devices, join through ``--coordinator/--num-processes/--process-id`` and train, then unlearn,
then evaluate the digits MLP on ``--devices 4`` (JAX's CPU collectives carry the all-reduces
between them). Their final parameters and JSON numbers must equal a one-process
``--devices 4`` run, and their workdirs must hold exactly the files of the one-process run,
each written once. A process whose peer never
joins, or dies mid-run, must exit non-zero with a clear message instead of waiting forever.

Every wait is bounded; children still running when a test ends are killed (by their pid).
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxunlearn import checkpoint, cli, parallel, runs

CLI = [sys.executable, "-m", "jaxunlearn.cli"]
TRAIN = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--seed", "0", "--no-progress"]
UNLEARN = ["unlearn", "--method", "random_label", "--forget", "3", "--no-progress"]
WAIT_S = 300  # bound on any one multi-process command (a few seconds when the machine is idle)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict:
    """The test environment minus its forced device count and any multi-process settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID,
                        parallel.ENV_PEER_TIMEOUT, "JAXUNLEARN_DISTRIBUTED", "TPU_WORKER_HOSTNAMES")}
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if not f.startswith("--xla_force_host_platform_device_count"))
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Processes:
    """Starts ``jaxunlearn`` processes with logs in files; kills whatever still runs on exit."""

    def __init__(self, logdir: pathlib.Path):
        self.logdir = logdir
        self.procs = []

    def start(self, argv, name):
        out = open(self.logdir / f"{name}.out", "w")
        err = open(self.logdir / f"{name}.err", "w")
        p = subprocess.Popen([*CLI, *map(str, argv)], stdout=out, stderr=err, env=child_env())
        p.name, p.files = name, (out, err)
        self.procs.append(p)
        return p

    def wait(self, p, timeout):
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{p.name} still running after {timeout} s (hung?)\n{self.logs(p)}")

    def logs(self, p):
        for f in p.files:
            f.flush()
        return "".join(f"--- {p.name}.{k}\n" + (self.logdir / f"{p.name}.{k}").read_text()[-3000:]
                       for k in ("out", "err"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
            for f in p.files:
                f.close()


def run_two(argv, logdir, name, timeout=WAIT_S, peer_timeout=60):
    """Runs ``argv`` as processes 0 and 1 of one run; returns ``[(rc, stdout, stderr)] * 2``."""
    logdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with Processes(logdir) as group:
        procs = [group.start([*argv, "--coordinator", f"127.0.0.1:{port}", "--num-processes", 2,
                              "--process-id", i, "--peer-timeout", peer_timeout], f"{name}-{i}") for i in (0, 1)]
        deadline = time.monotonic() + timeout
        for p in procs:
            rc = group.wait(p, max(1.0, deadline - time.monotonic()))
            assert rc == 0, group.logs(p)
    return [(p.returncode, (logdir / f"{p.name}.out").read_text(), (logdir / f"{p.name}.err").read_text())
            for p in procs]


def leaves(workdir):
    state = runs.load_run(workdir).state
    return jax.tree.leaves((state.params, state.batch_stats))


def tree_of(workdir):
    """Relative paths under ``workdir``; OCDBT data files (random names, a varying number) as ``d/*``."""
    workdir = pathlib.Path(workdir)
    return sorted({str(p.relative_to(workdir)) if p.parent.name != "d" else str(p.parent.relative_to(workdir)) + "/*"
                   for p in workdir.rglob("*")})


# ----------------------------------------------------------------------------- the two-process run

@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    """Train then unlearn, as one 2-process run and as one process (in-process, 4 devices)."""
    root = tmp_path_factory.mktemp("multihost")
    two, one = root / "two", root / "one"
    logs = {"train": run_two([*TRAIN, "--devices", 4, "--workdir", two / "train"], root / "logs", "train"),
            "unlearn": run_two([*UNLEARN, "--from", two / "train", "--devices", 4, "--workdir", two / "unlearn"],
                               root / "logs", "unlearn")}
    assert cli.main([*TRAIN, "--devices", "4", "--workdir", str(one / "train")]) == 0
    assert cli.main([*UNLEARN, "--from", str(one / "train"), "--devices", "4",
                     "--workdir", str(one / "unlearn")]) == 0
    return two, one, logs


@pytest.mark.parametrize("stage", ["train", "unlearn"])
def test_two_processes_equal_one_process(two_and_one, stage):
    two, one, _ = two_and_one
    a, b = leaves(one / stage), leaves(two / stage)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)
    s1, s2 = (json.loads((d / stage / "summary.json").read_text()) for d in (one, two))
    assert s2["devices_used"] == s1["devices_used"] == 4
    for key in ("test_accuracy", "retain_accuracy", "forget_accuracy"):
        if key in s1:
            assert s2[key] == pytest.approx(s1[key], abs=1e-9), key
    if stage == "train":
        assert s2["processes"] == 2 and s1["processes"] == 1


@pytest.mark.parametrize("stage", ["train", "unlearn"])
def test_two_processes_write_every_file_once(two_and_one, stage):
    two, one, _ = two_and_one
    wd = two / stage
    # the same files as the one-process run: no second copy, no leftover temporary file
    assert tree_of(wd) == tree_of(one / stage)
    assert not [p for p in tree_of(wd) if "process_1" in p]  # process 1 wrote no checkpoint data
    assert not [p for p in wd.parent.iterdir() if ".replaced-" in p.name]
    metrics = (wd / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == len((one / stage / "metrics.jsonl").read_text().splitlines()) >= 1
    assert len(set(metrics)) == len(metrics)
    assert [json.loads(m)["epoch"] for m in metrics] == list(range(1, len(metrics) + 1))
    json.loads((wd / "summary.json").read_text())
    steps = [p for p in wd.rglob("*") if p.is_dir() and p.name.isdigit()
             and p.parent.name in ("checkpoints", "best", "model")]
    assert steps and any(p.parent.name == "model" for p in steps)
    for step_dir in steps:  # Orbax's multi-host save, then process 0's checksums
        assert (step_dir / checkpoint.CHECKSUMS).is_file(), step_dir
        checkpoint.verify(step_dir)


def test_only_process_zero_prints(two_and_one):
    _, _, logs = two_and_one
    (_, out0, _), (_, out1, _) = logs["train"]
    assert "test accuracy" in out0 and "test accuracy" not in out1
    (_, out0, _), (_, out1, _) = logs["unlearn"]
    assert "random_label (full)" in out0 and "random_label" not in out1


def test_two_processes_evaluate_equals_one_process(two_and_one, tmp_path):
    """``evaluate --devices 4`` over two processes: the JSON numbers of one process, written once."""
    two, _, _ = two_and_one
    argv = ["evaluate", two / "train", "--forget", "3", "--no-relearn", "--devices", 4]
    logs = run_two([*argv, "--json", tmp_path / "two.json"], tmp_path / "logs", "evaluate")
    assert cli.main([str(a) for a in argv] + ["--json", str(tmp_path / "one.json")]) == 0
    numbers = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k not in ("runtime_s", "run")}
    a, b = numbers(tmp_path / "one.json"), numbers(tmp_path / "two.json")
    assert a.keys() == b.keys() and "lp" in a and "collapse" in a
    np.testing.assert_allclose(np.array(jax.tree.leaves(b), float), np.array(jax.tree.leaves(a), float),
                               rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "one.json", "two.json"]
    assert "wrote" in logs[0][1] and "wrote" not in logs[1][1]


# ----------------------------------------------------------------------------- lost peers

@pytest.mark.parametrize("process_id", [0, 1])
def test_a_peer_that_never_starts_ends_the_run(tmp_path, process_id):
    """Alone, process 0 (which hosts the coordinator) and process 1 (which looks for it) give
    up after ``--peer-timeout`` with one ``error:`` line and status 2."""
    with Processes(tmp_path) as group:
        p = group.start([*TRAIN, "--devices", 4, "--workdir", tmp_path / "w", "--coordinator",
                         f"127.0.0.1:{free_port()}", "--num-processes", 2, "--process-id", process_id,
                         "--peer-timeout", 4], "alone")
        rc = group.wait(p, 120)
        err = (tmp_path / "alone.err").read_text()
    assert rc == 2, err
    assert f"error: process {process_id} of 2: not every process joined the coordinator at 127.0.0.1:" in err
    assert "within 4 s" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("victim", [1, 0])
def test_a_peer_that_dies_ends_the_run(tmp_path, victim):
    """One process is killed once the run has started: the other exits non-zero (JAX's
    coordination service notices the missing heartbeats within ``--peer-timeout`` and ends
    it, or a collective fails first), and no summary is written."""
    port, wd = free_port(), tmp_path / "w"
    with Processes(tmp_path) as group:
        procs = [group.start([*TRAIN, "--epochs", 1000, "--devices", 4, "--workdir", wd, "--coordinator",
                              f"127.0.0.1:{port}", "--num-processes", 2, "--process-id", i, "--peer-timeout", 8],
                             f"p{i}") for i in (0, 1)]
        deadline = time.monotonic() + WAIT_S
        while not (wd / "run.json").exists():  # both joined and loaded the data; training starts
            assert all(p.poll() is None for p in procs), group.logs(procs[0]) + group.logs(procs[1])
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(procs[victim].pid, signal.SIGKILL)
        survivor = procs[1 - victim]
        rc = group.wait(survivor, 120)
        err = (tmp_path / f"p{1 - victim}.err").read_text()
    assert rc != 0, err
    assert any(s in err for s in ("another task died", "stopped sending heartbeats", "leader task was preempted/died",
                                  "error: a computation shared with the other processes failed")), err[-3000:]
    assert not (wd / "summary.json").exists()


# ----------------------------------------------------------------------------- settings

def test_distributed_config_from_flags_and_environment():
    cfg = parallel.distributed_config("10.0.0.1:1234", 4, 3, 30, environ={})
    assert cfg == parallel.DistributedConfig("explicit", "10.0.0.1:1234", 4, 3, 30.0)
    env = {parallel.ENV_COORDINATOR: "h:99", parallel.ENV_NUM_PROCESSES: "2", parallel.ENV_PROCESS_ID: "1",
           parallel.ENV_PEER_TIMEOUT: "7"}
    assert parallel.distributed_config(environ=env) == parallel.DistributedConfig("explicit", "h:99", 2, 1, 7.0)
    assert parallel.distributed_config(process_id=0, environ=env).process_id == 0  # flags win
    assert parallel.distributed_config(environ={}).mode == "none"
    assert parallel.distributed_config("h:1", 1, 0, environ={}).mode == "none"  # one process: nothing to join
    assert parallel.distributed_config(environ={"TPU_WORKER_HOSTNAMES": "a,b"}).mode == "auto"
    assert parallel.distributed_config(environ={"TPU_WORKER_HOSTNAMES": "a"}).mode == "none"
    assert parallel.distributed_config(environ={"JAXUNLEARN_DISTRIBUTED": "1"}).mode == "auto"
    assert parallel.distributed_config(environ={parallel.ENV_COORDINATOR: "h:1"}) == \
        parallel.DistributedConfig("auto", "h:1", None, None, parallel.DEFAULT_PEER_TIMEOUT)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(coordinator="h:1"), "needs --num-processes N, --process-id I too"),
    (dict(num_processes=2, process_id=0), "needs --coordinator HOST:PORT too"),
    (dict(coordinator="nohost", num_processes=2, process_id=0), "is not HOST:PORT"),
    (dict(coordinator="h:99999", num_processes=2, process_id=0), "is not HOST:PORT"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), "--process-id must be in 0..1"),
    (dict(coordinator="h:1", num_processes=0, process_id=0), "--num-processes must be at least 1"),
    (dict(coordinator="h:1", num_processes=2, process_id=0, timeout=0), "--peer-timeout must be a positive"),
])
def test_distributed_config_refuses_incomplete_settings(kwargs, needle):
    with pytest.raises(ValueError) as e:
        parallel.distributed_config(**kwargs, environ={})
    assert needle in str(e.value)


def test_joining_after_jax_has_started_is_refused(tmp_path, capfd):
    """In-process, JAX's backends are up already: ``jax.distributed`` cannot start any more."""
    assert jax.device_count() >= 1  # the backends are up (else this process would wait for a peer)
    capfd.readouterr()
    code = cli.main([*TRAIN, "--workdir", str(tmp_path / "w"), "--coordinator", f"127.0.0.1:{free_port()}",
                     "--num-processes", "2", "--process-id", "0", "--peer-timeout", "5"])
    err = capfd.readouterr().err
    assert code == 2 and err.startswith("error: cannot join a multi-process run") and "fresh process" in err, err
    assert not (tmp_path / "w").exists()


def test_cli_refuses_incomplete_settings_before_touching_anything(tmp_path, capfd):
    capfd.readouterr()
    code = cli.main([*TRAIN, "--workdir", str(tmp_path / "w"), "--coordinator", "127.0.0.1:1234"])
    err = capfd.readouterr().err
    assert code == 2 and err.startswith("error: a multi-process run needs --num-processes N"), err
    assert not (tmp_path / "w").exists()
