import json
import os
import subprocess
import sys

import pytest

from jaxunlearn import cli


def _snapshot(path):
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[p] = fh.read()
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("cli") / "digits"
    assert cli.main(["train", "--dataset", "digits", "--model", "mlp", "--workdir", str(wd), "--no-progress"]) == 0
    return wd


def test_train_digits_mlp_reaches_95_percent(digits_run):
    summary = json.loads((digits_run / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.95
    assert summary["train_time_s"] < 60
    lines = (digits_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and "val_accuracy" in json.loads(lines[-1])
    assert (digits_run / "model").is_dir()


def test_finished_workdir_is_not_overwritten(digits_run, capsys):
    before = _snapshot(digits_run)
    rc = cli.main(["train", "--dataset", "digits", "--workdir", str(digits_run), "--no-progress"])
    assert rc == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert _snapshot(digits_run) == before


@pytest.mark.parametrize("argv,msg", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--dataset", "digits", "--model", "nope"], "unknown model 'nope'"),
    (["--dataset", "digits", "--epochs", "0"], "epochs must be positive"),
    (["--dataset", "digits", "--lr", "-1"], "learning rate must be positive"),
    (["--dataset", "digits", "--batch-size", "100000"], "batch size 100000"),
])
def test_bad_train_arguments(argv, msg, tmp_path, capsys):
    wd = tmp_path / "w"
    assert cli.main(["train", *argv, "--workdir", str(wd), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (wd / "summary.json").exists()


def test_console_script_exits_nonzero_without_traceback(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "jaxunlearn")
    r = subprocess.run([exe, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--workdir",
                        str(tmp_path / "w")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "cifar10" in r.stderr and "Traceback" not in r.stderr


def _console(code_before: str, argv: list, env_over: dict | None = None):
    """``console_main`` (what the ``jaxunlearn`` program runs) in a fresh process, after ``code_before``."""
    code = (f"import sys; {code_before}; sys.argv = {['jaxunlearn', *argv]!r}; "
            "from jaxunlearn.cli import console_main; console_main()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as in a pipe
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**env, **(env_over or {})})


def test_console_exit_runs_exit_handlers_flushes_output_and_keeps_the_exit_code(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "jaxunlearn")
    with open(exe) as f:
        assert "console_main" in f.read()  # the installed program is the quick-exit entry point
    r = _console("import atexit; atexit.register(lambda: print('exit handler ran'))", ["methods"])
    assert r.returncode == 0 and "random_label" in r.stdout
    assert r.stdout.rstrip().endswith("exit handler ran")  # main's output, then the handlers, all flushed
    r = _console("pass", ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--workdir",
                          str(tmp_path / "w")])
    assert r.returncode == 2 and "cifar10" in r.stderr and "Traceback" not in r.stderr


def test_console_exits_normally_while_another_thread_runs(tmp_path):
    done = tmp_path / "thread-finished"
    start = ("import threading, time, pathlib; "
             f"threading.Thread(target=lambda: (time.sleep(5.0), pathlib.Path({str(done)!r}).write_text('ok'))).start()")
    r = _console(start, ["methods"])
    assert r.returncode == 0 and done.read_text() == "ok"  # the thread was not cut short


def test_console_skips_the_interpreter_teardown_unless_asked_for_a_full_exit():
    # an object whose destructor runs only in the interpreter's teardown of __main__
    before = "class D:\n    def __del__(self): print('teardown')\nd = D()"
    before = "exec(" + repr(before) + ")"
    quick = _console(before, ["methods"])
    full = _console(before, ["methods"], {"JAXUNLEARN_FULL_EXIT": "1"})
    assert quick.returncode == full.returncode == 0
    assert "teardown" not in quick.stdout and full.stdout.rstrip().endswith("teardown")


def test_console_output_that_cannot_be_written_is_not_exit_0(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    # a command that succeeds with one short line: it stays in the buffer until the final flush
    code = ("import jaxunlearn.cli as cli; cli.main = lambda: (print('done'), 0)[1]; cli.console_main()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=120, env=env)
    assert r.returncode == 120  # as Python's own exit after a failed flush
