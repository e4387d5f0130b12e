"""Reliability (issue 7), part 1: bad input is refused cleanly, files are safe.

Every refusal must: exit non-zero, print a one- or two-line ``error: ...`` naming the problem
(no traceback), and leave every watched directory byte-identical (all files and bytes).
Also: ``--overwrite`` moves a finished run aside (never deletes it), corrupt checkpoints are
refused, JSON results are written atomically, and nothing is ever unpickled.

The CLI runs in-process (``cli.main``) to keep the suite fast; ``capfd`` captures the file
descriptors too, so output from native code (Orbax, TensorStore) would be seen.
"""

import gzip
import json
import os
import pathlib
import pickle
import re
import shutil
import struct

import jax
import numpy as np
import pytest

from jaxunlearn import analyze, checkpoint, cli, data as data_lib, runs, train
from jaxunlearn.models import get_model
from jaxunlearn.state import Net, TrainState, tree_equal

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers

def snapshot(*paths):
    """Byte-level picture of ``paths``: every file's bytes and every directory, or None if absent."""
    out = {}
    for path in map(pathlib.Path, paths):
        if not path.exists():
            out[str(path)] = None
            continue
        out[str(path)] = {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else "<dir>")
                          for p in sorted(path.rglob("*"))}
    return out


def refused(capfd, argv, *needles, watch=(), rc=2):
    """Runs the CLI and checks the refusal contract; returns stderr."""
    capfd.readouterr()
    before = snapshot(*watch)
    code = cli.main([str(a) for a in argv])
    err = capfd.readouterr().err
    assert code == rc, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in err, err
    assert snapshot(*watch) == before, "the refusal changed files"
    return err


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished digits-MLP run (2 epochs). Tests must not change it (they watch it)."""
    wd = tmp_path_factory.mktemp("rel") / "base"
    assert cli.main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--workdir", str(wd),
                     "--no-progress"]) == 0
    return wd


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


def unlearn_argv(src, wd, *extra, method="finetune", forget="3"):
    return ["unlearn", "--from", src, "--method", method, "--forget", forget, "--workdir", wd, "--no-progress",
            *extra]


# ----------------------------------------------------------------------------- unknown names

@pytest.mark.parametrize("argv,needle", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--dataset", "digits", "--model", "nope"], "unknown model 'nope'"),
])
def test_train_unknown_names(tmp_path, capfd, argv, needle):
    refused(capfd, ["train", *argv, "--workdir", tmp_path / "w", "--no-progress"], needle, watch=[tmp_path])
    assert not (tmp_path / "w").exists()


def test_unlearn_unknown_method(base, tmp_path, capfd):
    refused(capfd, unlearn_argv(base, tmp_path / "u", method="nope"), "unknown method 'nope'",
            watch=[tmp_path, base])


def test_reproduce_unknown_experiment(tmp_path, capfd):
    try:
        cli.build_parser().parse_args(["reproduce", "nope"])
    except SystemExit:
        pytest.xfail("the reproduce command is not wired yet")
    refused(capfd, ["reproduce", "nope", "--workdir", tmp_path / "w"], "unknown experiment 'nope'",
            watch=[tmp_path])


# ----------------------------------------------------------------------------- forget sets

@pytest.mark.parametrize("forget,needle", [
    ("10", "forget class 10 is outside"),
    ("-1", "forget class -1 is outside"),
    (",".join(map(str, range(10))), "cannot forget every class"),
    ("", "empty forget set"),
    ("a,b", "malformed forget list 'a,b'"),
    ("1.5", "forget fraction must be in (0, 1)"),
])
def test_unlearn_bad_forget_set(base, tmp_path, capfd, forget, needle):
    refused(capfd, unlearn_argv(base, tmp_path / "u", forget=forget), needle, watch=[tmp_path, base])


# ----------------------------------------------------------------------------- hyper-parameters

@pytest.mark.parametrize("argv,needle", [
    (["--lr", "-0.1"], "learning rate must be positive"),
    (["--lr", "nan"], "learning rate must be positive"),
    (["--epochs", "0"], "epochs must be positive"),
    (["--batch-size", "100000"], "batch size 100000"),
    (["--batch-size", "0"], "batch size 0"),
    (["--weight-decay", "-1"], "weight decay must be >= 0"),
    (["--devices", "3"], "not divisible by the 3 devices"),
    (["--devices", "0"], "--devices must be at least 1"),
])
def test_train_bad_hyperparameters(tmp_path, capfd, argv, needle):
    refused(capfd, ["train", "--dataset", "digits", "--model", "mlp", *argv, "--workdir", tmp_path / "w",
                    "--no-progress"], needle, watch=[tmp_path])


@pytest.mark.parametrize("argv,needle", [
    (["--lr", "-1"], "lr must be finite and > 0, got -1"),
    (["--lr", "nan"], "lr must be finite and > 0, got nan"),
    (["--set", "lr=abc"], "lr=abc: lr is a number (> 0)"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--batch-size", "100000"], "batch size 100000 is larger than the retain set"),
    (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
    (["--set", "oops"], "--set expects NAME=VALUE"),
    (["--devices", "3"], "128 is not divisible by the 3 devices"),
])
def test_unlearn_bad_hyperparameters(base, tmp_path, capfd, argv, needle):
    refused(capfd, unlearn_argv(base, tmp_path / "u", *argv), needle, watch=[tmp_path, base])


def test_unlearn_head_mode_without_classifier_loss(base, tmp_path, capfd):
    refused(capfd, unlearn_argv(base, tmp_path / "u", "--classifier-only", method="svd"), "has no classifier loss",
            watch=[tmp_path, base])


# ----------------------------------------------------------------------------- data files

def _write_idx(path, dims, payload_len=None, header_only=None):
    raw = bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    n = int(np.prod(dims)) if payload_len is None else payload_len
    raw = raw + bytes(n) if header_only is None else raw[:header_only]
    with gzip.open(path, "wb") as f:
        f.write(raw)


def _fashion_dir(root, train_images=(20, 28, 28), train_labels=(20,)):
    root.mkdir()
    files = data_lib.FASHION_MNIST_FILES
    _write_idx(root / files["train_images"], train_images)
    _write_idx(root / files["train_labels"], train_labels)
    _write_idx(root / files["test_images"], (10, 28, 28))
    _write_idx(root / files["test_labels"], (10,))
    return root


def test_missing_data_files(tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    refused(capfd, ["train", "--dataset", "fashion_mnist", "--data-dir", tmp_path / "empty", "--workdir",
                    tmp_path / "w"], "Fashion-MNIST not found", watch=[tmp_path])


def test_truncated_gzip_data_file(tmp_path, capfd):
    d = _fashion_dir(tmp_path / "data")
    f = d / data_lib.FASHION_MNIST_FILES["train_images"]
    f.write_bytes(f.read_bytes()[:30])  # the gzip stream ends early
    refused(capfd, ["train", "--dataset", "fashion_mnist", "--data-dir", d, "--workdir", tmp_path / "w"],
            "cannot read IDX file", "train-images-idx3-ubyte.gz", watch=[tmp_path])


@pytest.mark.parametrize("case,needle", [
    ("short_payload", "is truncated: expected 15680 values, found 500"),
    ("short_header", "its header names 3 dimensions but ends early"),
    ("count_mismatch", "do not match"),
])
def test_corrupt_idx_content(tmp_path, capfd, case, needle):
    d = _fashion_dir(tmp_path / "data", train_labels=(19,) if case == "count_mismatch" else (20,))
    f = d / data_lib.FASHION_MNIST_FILES["train_images"]
    if case == "short_payload":
        _write_idx(f, (20, 28, 28), payload_len=500)
    elif case == "short_header":
        _write_idx(f, (20, 28, 28), header_only=6)
    refused(capfd, ["train", "--dataset", "fashion_mnist", "--data-dir", d, "--workdir", tmp_path / "w"],
            needle, watch=[tmp_path])


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoint_of_another_model(base, tmp_path, capfd):
    src = copy_run(base, tmp_path / "cnn_run")
    info = json.loads((src / "run.json").read_text())
    (src / "run.json").write_text(json.dumps({**info, "model": "cnn"}))
    refused(capfd, unlearn_argv(src, tmp_path / "u"), "is for model='mlp', not 'cnn'", watch=[tmp_path])


def test_checkpoint_restore_checks_dataset_and_shapes(base, digits):
    mlp = Net(get_model("mlp", 10), digits.mean, digits.std)
    cnn = Net(get_model("cnn", 10), digits.mean, digits.std)

    def template(net):
        s = train.init_state(net, jax.random.key(0), digits.image_shape, train.OptimConfig())
        return TrainState(s.params, s.batch_stats, None, s.step)

    with pytest.raises(checkpoint.CheckpointError, match="dataset='digits', not 'cifar10'"):
        checkpoint.restore(base / "model", template(mlp), expect_meta={"dataset": "cifar10"})
    with pytest.raises(checkpoint.CheckpointError):  # no metadata to compare: the structure differs
        checkpoint.restore(base / "model", template(cnn))
    restored, meta = checkpoint.restore(base / "model", template(mlp), expect_meta={"model": "mlp"})
    assert meta["model"] == "mlp" and tree_equal(restored.params, runs.load_run(base).state.params)


def _data_files(step_dir):
    return sorted((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
                  key=lambda p: p.stat().st_size)


def _corrupt(step_dir, how):
    if how == "truncate_array_data":
        f = _data_files(step_dir)[-1]
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "garble_array_data":  # same size, different bytes: Orbax alone would load garbage
        f = _data_files(step_dir)[-1]
        b = bytearray(f.read_bytes())
        for i in range(len(b) // 2, len(b) // 2 + 64):
            b[i] ^= 0x5A
        f.write_bytes(bytes(b))
    elif how == "delete_manifest":
        (step_dir / "state" / "manifest.ocdbt").unlink()
    elif how == "truncate_metadata":
        f = step_dir / "state" / "_METADATA"
        f.write_bytes(f.read_bytes()[:100])
    elif how == "empty_dir":
        shutil.rmtree(step_dir)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how,needle", [
    ("truncate_array_data", "is corrupt"),
    ("garble_array_data", "is corrupt"),
    ("delete_manifest", "manifest.ocdbt is missing"),
    ("truncate_metadata", "_METADATA does not match its checksum"),
    ("empty_dir", "no complete checkpoint"),
])
def test_corrupt_model_checkpoint(base, tmp_path, capfd, how, needle):
    src = copy_run(base, tmp_path / "src")
    _corrupt(src / "model" / "0", how)
    refused(capfd, unlearn_argv(src, tmp_path / "u"), needle, watch=[tmp_path])


def test_corrupt_resume_checkpoint_is_refused(base, tmp_path, capfd):
    """An unfinished train whose newest checkpoint is corrupt: refused, not silently restarted."""
    wd = copy_run(base, tmp_path / "base")  # same name, so the same command resumes it
    (wd / "summary.json").unlink()
    newest = wd / "checkpoints" / str(checkpoint.latest_step(wd / "checkpoints"))
    _corrupt(newest, "garble_array_data")
    refused(capfd, ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--workdir", wd,
                    "--no-progress"], "is corrupt", watch=[tmp_path])


def test_pickle_in_checkpoint_dir_is_never_unpickled(base, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    src = copy_run(base, tmp_path / "src")
    payload = pickle.dumps(Evil())
    for d in (src / "model", src / "model" / "0", src / "model" / "0" / "state"):
        (d / "state.pkl").write_bytes(payload)
    loaded = runs.load_run(src)  # stray files are ignored
    assert tree_equal(loaded.state.params, runs.load_run(base).state.params)
    # Under the legacy Flax file name Orbax reads it as msgpack (data only, no code): refused.
    (src / "model" / "0" / "state" / "checkpoint").write_bytes(payload)
    with pytest.raises(runs.RunError, match="cannot restore checkpoint"):
        runs.load_run(src)
    feats = tmp_path / "features.npz"
    feats.write_bytes(payload)
    with pytest.raises(ValueError, match="pickled or unknown content is never loaded"):
        analyze.load_features_npz(feats)
    assert not marker.exists()


def test_loaders_never_unpickle():
    """Source check: no module can unpickle; every np.load refuses pickles."""
    bad = re.compile(r"\bpickle\.loads?\(|allow_pickle\s*=\s*True|\bimport (c?pickle|dill|cloudpickle|joblib)\b"
                     r"|\btorch\.load\(|\bnp\.load\([^)]*\)\.item\(")
    offenders, loads = [], []
    for path in sorted([*(ROOT / "jaxunlearn").rglob("*.py"), *(ROOT / "experiments").rglob("*.py")]):
        text = path.read_text()
        offenders += [f"{path.name}: {m.group(0)}" for m in bad.finditer(text)]
        for m in re.finditer(r"\bnp\.load\(([^)]*)\)", text):
            loads.append((path.name, m.group(1)))
    assert not offenders, offenders
    assert loads, "expected the features loader to use np.load"
    assert all("allow_pickle=False" in args for _, args in loads), loads


def test_object_array_npz_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    with np.load(path, allow_pickle=False) as f, pytest.raises(ValueError, match="allow_pickle"):
        f["x"]


# ----------------------------------------------------------------------------- finished workdirs

def test_finished_workdir_refused_without_overwrite(base, tmp_path, capfd):
    refused(capfd, ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--workdir", base,
                    "--no-progress"], "already holds a finished run", watch=[base])
    refused(capfd, unlearn_argv(base, base), "already holds a finished run", watch=[base])


def test_overwrite_moves_the_old_run_aside(base, tmp_path, capfd):
    wd = copy_run(base, tmp_path / "run")
    before = snapshot(wd)[str(wd)]
    assert cli.main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--workdir", str(wd),
                     "--overwrite", "--no-progress"]) == 0
    backups = sorted(tmp_path.glob("run.replaced-*"))
    assert len(backups) == 1 and snapshot(backups[0])[str(backups[0])] == before  # moved, byte-identical
    assert json.loads((wd / "summary.json").read_text())["epochs_run"] == 1
    assert "moved the previous run to" in capfd.readouterr().out


def test_overwrite_twice_in_one_second_keeps_both(tmp_path):
    wd = tmp_path / "w"
    for i in range(3):
        runs.prepare_workdir(wd, True, {"kind": "x", "i": i})
        runs.write_json_atomic(wd / "summary.json", {"i": i})
    backups = sorted(tmp_path.glob("w.replaced-*"))
    assert len(backups) == 2
    assert sorted(json.loads((b / "summary.json").read_text())["i"] for b in backups) == [0, 1]


def test_overwrite_of_unfinished_run_with_other_settings_moves_it_aside(tmp_path):
    """Its checkpoints must not be resumed by a run with other settings (e.g. another seed)."""
    wd = tmp_path / "w"
    runs.prepare_workdir(wd, False, {"kind": "train", "seed": 0})
    (wd / "checkpoints").mkdir()
    with pytest.raises(runs.RunError, match="unfinished run with other settings"):
        runs.prepare_workdir(wd, False, {"kind": "train", "seed": 1})
    assert runs.prepare_workdir(wd, False, {"kind": "train", "seed": 0}) is True  # same settings: resume
    assert runs.prepare_workdir(wd, True, {"kind": "train", "seed": 1}) is False
    assert not (wd / "checkpoints").exists()
    (backup,) = tmp_path.glob("w.replaced-*")
    assert (backup / "checkpoints").is_dir() and json.loads((backup / "run.json").read_text())["seed"] == 0


def test_save_model_replaces_a_leftover_model_dir(base, tmp_path):
    """A run stopped between model/ and summary.json can finish on re-run (Orbax refuses to re-save step 0)."""
    src = runs.load_run(base)
    wd = tmp_path / "w"
    wd.mkdir()
    zeros = TrainState(jax.tree.map(np.zeros_like, src.state.params), src.state.batch_stats, None,
                       src.state.step)
    runs.save_model(wd, "mlp", "digits", zeros)
    runs.save_model(wd, "mlp", "digits", src.state)
    (wd / "summary.json").write_text("{}")
    (wd / "run.json").write_text(json.dumps(src.info))
    assert tree_equal(runs.load_run(wd, dataset=src.dataset).state.params, src.state.params)
    assert sorted(p.name for p in wd.iterdir()) == ["model", "run.json", "summary.json"]


# ----------------------------------------------------------------------------- analyze

def _features(**over):
    rng = np.random.default_rng(0)
    a = {"train_features": rng.normal(size=(60, 8)).astype(np.float32), "train_labels": np.arange(60) % 3,
         "test_features": rng.normal(size=(30, 8)).astype(np.float32), "test_labels": np.arange(30) % 3}
    a.update(over)
    return {k: v for k, v in a.items() if v is not None}


def _nan_features():
    f = _features()["train_features"].copy()
    f[3, 3] = np.nan
    return f


@pytest.mark.parametrize("case,needle", [
    ("missing_key", "missing key 'test_labels'"),
    ("wrong_shape", "mismatched shapes"),
    ("wrong_rank", "train_features must be 2-d"),
    ("nan", "non-finite"),
    ("single_class", "fewer than 2 classes"),
    ("object_array", "cannot be loaded without pickle"),
    ("not_found", "not found"),
    ("truncated", "truncated or corrupt"),
    ("npy", "holds a single array"),
])
def test_analyze_bad_features(tmp_path, capfd, case, needle):
    path = tmp_path / "f.npz"
    arrays = {
        "missing_key": lambda: _features(test_labels=None),
        "wrong_shape": lambda: _features(train_labels=np.arange(50) % 3),
        "wrong_rank": lambda: _features(train_features=np.zeros((60, 2, 4), np.float32)),
        "nan": lambda: _features(train_features=_nan_features()),
        "single_class": lambda: _features(train_labels=np.zeros(60, int), test_labels=np.zeros(30, int)),
        "object_array": lambda: _features(train_features=np.array([object()] * 3, dtype=object)),
    }
    if case in arrays:
        np.savez(path, **arrays[case]())
    elif case == "truncated":
        np.savez(path, **_features())
        path.write_bytes(path.read_bytes()[:200])
    elif case == "npy":
        np.save(tmp_path / "f.npy", np.zeros(3))
        (tmp_path / "f.npy").rename(path)
    refused(capfd, ["analyze", path, "--json", tmp_path / "out" / "r.json"], needle, watch=[tmp_path])
    assert not (tmp_path / "out").exists()


def test_analyze_refuses_existing_json(tmp_path, capfd):
    np.savez(tmp_path / "f.npz", **_features())
    (tmp_path / "r.json").write_text("{}")
    refused(capfd, ["analyze", tmp_path / "f.npz", "--json", tmp_path / "r.json"], "pass --overwrite",
            watch=[tmp_path])


# ----------------------------------------------------------------------------- atomic writes

class _Bomb:
    """Serialises halfway, then fails (as a full disk or a bug in a value would)."""


def _bomb_default(o):
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("writer", ["runs_json", "analyze_json", "runs_text"])
def test_atomic_write_failure_keeps_previous_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "results.json"
    runs.write_json_atomic(path, {"old": True})
    old = path.read_bytes()
    big = {f"k{i}": list(range(100)) for i in range(200)}  # lots written before the failing value
    if writer == "runs_json":
        monkeypatch.setattr(runs, "json_safe", _bomb_default)  # serialisation fails
        with pytest.raises(OSError, match="simulated"):
            runs.write_json_atomic(path, {**big, "bad": _Bomb()})
    elif writer == "analyze_json":
        monkeypatch.setattr(analyze.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("fsync failed")))
        with pytest.raises(OSError, match="fsync failed"):
            analyze.write_json_atomic(path, big)
    else:
        real_replace = os.replace
        monkeypatch.setattr(runs.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            runs.write_text_atomic(path, "x" * 100000)
        monkeypatch.setattr(runs.os, "replace", real_replace)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary file left


def test_atomic_write_produces_strict_json(tmp_path):
    path = tmp_path / "r.json"
    runs.write_json_atomic(path, {"a": float("nan"), "b": np.float32(0.5), "c": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": None, "b": 0.5, "c": [0, 1]}
    assert oct(path.stat().st_mode & 0o777) == "0o644"
