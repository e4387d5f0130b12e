"""Run directories: recipes, training an original model, saving/loading a finished run.

A run directory (``workdir``) holds:

* ``run.json``      what the run is (kind, dataset, model, seed, recipe, forget spec, ...);
* ``metrics.jsonl`` one JSON object per epoch;
* ``checkpoints/``  Orbax checkpoints every N steps (the last K kept) for resuming;
* ``model/``        the final state (Orbax);
* ``summary.json``  written last, atomically: its presence marks the run finished.

With several processes (``jax.distributed``) every process runs the same code on the same
(shared) workdir: the read-only checks run everywhere, every write goes through
:func:`jaxunlearn.parallel.on_primary` (process 0 writes, the others wait for it), and
checkpoints through Orbax's multi-host save (:mod:`jaxunlearn.checkpoint`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import shutil
import signal
import tempfile
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import checkpoint, compiled, data as data_lib, parallel, train
from jaxunlearn.models import get_model
from jaxunlearn.state import Net, TrainState


class RunError(RuntimeError):
    """A user-facing problem with a run directory (the CLI prints it without a traceback)."""


# ----------------------------------------------------------------------------- files

def json_safe(obj):
    """A JSON-able copy of ``obj``: NumPy/JAX scalars and arrays become Python numbers and lists,
    NaN/inf become ``None`` (so files stay strict JSON), mapping keys become strings."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__") and not np.isscalar(obj):
        return json_safe(np.asarray(obj).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def write_json_atomic(path, obj) -> None:
    """Writes ``obj`` as strict JSON (see :func:`json_safe`) with :func:`write_text_atomic`.

    Serialisation happens first, so an object that cannot be written leaves no file behind.
    """
    write_text_atomic(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def write_text_atomic(path, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path`` and renames it into place.

    With several processes only process 0 writes; every process returns once the file is in
    place (:func:`jaxunlearn.parallel.on_primary`).
    """
    path = pathlib.Path(path)
    parallel.on_primary(lambda: _write_text_atomic(path, text), str(path))


def _write_text_atomic(path: pathlib.Path, text: str) -> None:
    write_file_atomic(path, lambda f: f.write(text))


def write_file_atomic(path: pathlib.Path, write, binary: bool = False, exclusive: bool = False) -> bool:
    """Writes ``path`` with what ``write(file)`` writes, atomically, in this process.

    The content goes to a temporary file ``.NAME.*.partial`` beside ``path``, is synced, then
    renamed into place, so a reader sees the old file or the whole new one. With ``exclusive``
    the temporary file is hard-linked into place instead, which fails if ``path`` exists: of
    several processes creating one file exactly one succeeds and a finished file is never
    replaced (a file system without hard links falls back to a check and a rename). Returns
    False (nothing written) only when ``exclusive`` and ``path`` already existed.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if exclusive:
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links here
                if path.exists():
                    return False
        os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def append_jsonl(path, record: dict) -> None:
    """Appends ``record`` as one JSON line to ``path`` (in process 0 only, see :func:`write_text_atomic`)."""
    line = json.dumps(json_safe(record)) + "\n"

    def append():
        with open(path, "a") as f:
            f.write(line)

    parallel.on_primary(append, str(path))


def read_json(path) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise RunError(f"{path} not found") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def prepare_workdir(workdir, overwrite: bool, run_info: dict) -> bool:
    """Creates ``workdir`` for a run described by ``run_info``; returns True when resuming.

    Refuses (``RunError``) a directory holding a finished run (``summary.json``) unless
    ``overwrite``, and a directory holding an unfinished run of a *different* description.
    With ``overwrite`` the previous run directory (summary, checkpoints, model, everything) is
    renamed to ``<workdir>.replaced-<time>[-N]`` beside it, never deleted.

    Several processes: each one runs the checks (so each refuses alike), process 0 alone
    moves, creates and writes.
    """
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise RunError(f"workdir {workdir} exists and is not a directory")
    summary, info_path = workdir / "summary.json", workdir / "run.json"
    move = False
    if summary.exists():
        if not overwrite:
            raise RunError(f"{workdir} already holds a finished run (summary.json); pass --overwrite "
                           "to replace it, or choose another --workdir")
        move = True
    elif info_path.exists():
        old = read_json(info_path)
        if _comparable(old) == _comparable(run_info):
            return True
        if not overwrite:
            raise RunError(f"{workdir} holds an unfinished run with other settings; pass --overwrite "
                           "or choose another --workdir")
        move = True  # its checkpoints must not be resumed by a run with other settings
    text = json.dumps(json_safe(run_info), indent=2, allow_nan=False) + "\n"

    def create():
        if move:
            _move_aside(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(info_path, text)

    parallel.on_primary(create, str(info_path))
    return False


def _move_aside(workdir: pathlib.Path) -> pathlib.Path:
    base = workdir.parent / f"{workdir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    backup, n = base, 1
    while backup.exists():  # two replacements within one second
        backup, n = base.with_name(f"{base.name}-{n}"), n + 1
    workdir.rename(backup)
    print(f"moved the previous run to {backup}")
    return backup


def _comparable(info: dict) -> dict:
    """The description as it reads back from run.json (tuples become lists), minus time and argv."""
    info = json.loads(json.dumps(json_safe(info)))
    return {k: v for k, v in info.items() if k not in ("created", "command")}


# ----------------------------------------------------------------------------- interruption

class StopFlag:
    """Turns SIGINT/SIGTERM into a flag that loops poll, so state can be saved before exit.

    Args:
      only_while_polled: if True, a signal only sets the flag inside :meth:`polled` sections
        (loops that poll it and save their state); anywhere else it raises
        ``KeyboardInterrupt`` at once. Multi-step jobs (a study) use this: their results are
        written atomically, so stopping between saves loses only the unit of work in progress.
        A second signal always raises ``KeyboardInterrupt``.
    """

    def __init__(self, only_while_polled: bool = False):
        self.signal: int | None = None
        self.only_while_polled = only_while_polled
        self._polled = 0

    def __call__(self) -> bool:
        return self.signal is not None

    @contextlib.contextmanager
    def polled(self):
        """Marks a section whose loop polls this flag (see ``only_while_polled``)."""
        self._polled += 1
        try:
            yield self
        finally:
            self._polled -= 1

    @contextlib.contextmanager
    def installed(self):
        old = {}

        def handler(signum, frame):
            stop_now = self.signal is not None or (self.only_while_polled and not self._polled)
            self.signal = signum
            if stop_now:
                raise KeyboardInterrupt

        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                old[s] = signal.signal(s, handler)
            except ValueError:  # not in the main thread
                pass
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


class Interrupted(RunError):
    """The run was stopped by a signal after saving its state; re-running resumes it."""


# ----------------------------------------------------------------------------- recipes

@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to train an original model (paper protocol, scaled to the dataset)."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    final_lr: float = 1e-5
    pad: int = 0
    flip: bool = False
    patience: int | None = None  # early stopping on validation accuracy

    def optim(self, steps_per_epoch: int) -> train.OptimConfig:
        return train.OptimConfig("sgd", self.momentum, True, self.weight_decay, "cosine",
                                 int(self.warmup_epochs * steps_per_epoch), self.epochs * steps_per_epoch,
                                 self.final_lr)

    def augment(self) -> train.AugmentConfig:
        return train.AugmentConfig(self.pad, self.flip)


DEFAULT_MODEL = {"digits": "mlp", "fashion_mnist": "cnn", "mnist": "cnn", "cifar10": "resnet18",
                 "cifar100": "resnet18", "tiny_imagenet": "resnet50"}

RECIPES = {
    ("digits", "mlp"): Recipe(epochs=30, batch_size=64, lr=0.05),
    ("digits", "cnn"): Recipe(epochs=30, batch_size=64, lr=0.05),
    ("fashion_mnist", "cnn"): Recipe(epochs=8, batch_size=128, lr=0.05, warmup_epochs=0.5),
    ("fashion_mnist", "mlp"): Recipe(epochs=15, batch_size=128, lr=0.05),
    ("mnist", "cnn"): Recipe(epochs=5, batch_size=128, lr=0.05),
    # The paper's protocol (Table 4; docs/parity.md row 3): up to 300 epochs at lr 0.01 with a
    # 5-epoch linear warm-up and cosine to 1e-5, early stopping with patience 50 on the 10 %
    # validation split (the best validation state is kept); crop (pad 4) + flip.
    ("cifar10", "resnet18"): Recipe(epochs=300, lr=0.01, warmup_epochs=5, final_lr=1e-5, pad=4, flip=True,
                                    patience=50),
    ("cifar100", "resnet18"): Recipe(epochs=300, lr=0.01, warmup_epochs=5, final_lr=1e-5, pad=4, flip=True,
                                     patience=50),
    # Tiny-ImageNet: the authors' only from-scratch script (run_resnet_retrain.sh:128-137, their
    # Tiny rate 0.05 also in section A.4): lr 0.05, weight decay 1e-4, patience 75, and their Tiny
    # loader's crop with padding 4 (utils.py:369-370).
    ("tiny_imagenet", "resnet50"): Recipe(epochs=300, lr=0.05, weight_decay=1e-4, warmup_epochs=5, final_lr=1e-5,
                                          pad=4, flip=True, patience=75),
}


def recipe_for(dataset: str, model: str, **overrides) -> Recipe:
    base = RECIPES.get((dataset, model), Recipe(epochs=10))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **overrides)


def validate_recipe(r: Recipe, num_train: int) -> None:
    if r.epochs <= 0:
        raise RunError(f"epochs must be positive, got {r.epochs}")
    if not r.lr > 0:
        raise RunError(f"learning rate must be positive, got {r.lr}")
    if r.batch_size <= 0 or r.batch_size > num_train:
        raise RunError(f"batch size {r.batch_size} must be in 1..{num_train} (the training set size)")
    if r.weight_decay < 0:
        raise RunError(f"weight decay must be >= 0, got {r.weight_decay}")


# ----------------------------------------------------------------------------- runs

def make_net(ds: data_lib.Dataset, model: str) -> Net:
    return Net(get_model(model, ds.num_classes), ds.mean, ds.std)


def device_data(ds: data_lib.Dataset, mesh=None) -> dict:
    """Training arrays as device arrays (replicated over ``mesh`` if given)."""
    d = {"images": jnp.asarray(ds.train_images), "labels": jnp.asarray(ds.train_labels)}
    return parallel.replicate(d, mesh) if mesh is not None else d


def accuracy_of(net: Net, state: TrainState, images, labels, predict=None) -> float:
    predict = predict or train.make_predict(net)
    logits, _ = predict(state.params, state.batch_stats, jnp.asarray(images))
    return float(np.mean(np.asarray(jnp.argmax(logits, -1)) == np.asarray(labels)))


def train_model(ds: data_lib.Dataset, model: str, recipe: Recipe, seed: int, workdir=None, *,
                train_index: np.ndarray | None = None, progress: bool | str = True,
                checkpoint_every: int | None = None, keep: int = 3, mesh=None,
                stop: StopFlag | None = None) -> tuple[Net, TrainState, dict]:
    """Trains a model from scratch on ``ds`` (or on the subset ``train_index`` of its train split).

    With a ``workdir``: checkpoints every ``checkpoint_every`` steps (default: every epoch)
    and resumes from the newest one, logs ``metrics.jsonl``, keeps the best validation
    state in ``best/``. Returns ``(net, final_state, info)``.

    Raises:
      Interrupted: a signal arrived; the state was checkpointed and a re-run resumes.
      train.Diverged: non-finite loss; the last finite checkpoint is kept.
    """
    net = make_net(ds, model)
    idx = np.arange(len(ds.train_labels)) if train_index is None else np.asarray(train_index)
    validate_recipe(recipe, len(idx))
    if mesh is not None:
        parallel.check_batch_size(recipe.batch_size, mesh)
    spe = train.steps_per_epoch(len(idx), recipe.batch_size)
    cfg = recipe.optim(spe)
    key = jax.random.key(seed)
    k_init, k_data = jax.random.split(key)
    state = train.init_state(net, k_init, ds.image_shape, cfg)
    sharding = parallel.batch_sharding(mesh) if mesh is not None else None
    # one compiled step for every model of the same network, recipe and shapes (seeds, retrainings)
    run_steps = compiled.cached(("train", net, cfg, recipe.augment(), recipe.batch_size, sharding),
                                lambda: train.make_run_steps(
                                    train.make_step(net, train.supervised_loss, cfg, augment=recipe.augment()),
                                    {"train": recipe.batch_size}, "train", sharding))
    data = device_data(ds, mesh)
    streams = {"train": jnp.asarray(idx, jnp.int32)}
    hparams = {"lr": jnp.float32(recipe.lr)}
    predict = train.make_predict(net)
    val_x, val_y = jnp.asarray(ds.val_images), ds.val_labels

    def evaluate(s):
        return {"val_accuracy": accuracy_of(net, s, val_x, val_y, predict)} if len(val_y) else {}

    ck_dir = best_dir = None
    on_chunk, log = None, None
    best = None
    if workdir is not None:
        workdir = pathlib.Path(workdir)
        ck_dir, best_dir = workdir / "checkpoints", workdir / "best"
        meta = {"dataset": ds.name, "model": model}
        if checkpoint.latest_step(ck_dir) is not None:
            restored, _ = checkpoint.restore(ck_dir, state, expect_meta=meta)
            state = jax.tree.map(jnp.asarray, restored)
            if checkpoint.latest_step(best_dir) is not None:
                bstate, bmeta = checkpoint.restore(best_dir, state, expect_meta=meta)
                best = (bmeta["score"], jax.tree.map(jnp.asarray, bstate), bmeta["epoch"], bmeta["since_best"])
        def on_chunk(s, step_no):
            checkpoint.save(ck_dir, step_no, s, meta, max_to_keep=keep)

        def log(record):
            append_jsonl(workdir / "metrics.jsonl", record)
    if mesh is not None:
        state = parallel.replicate(state, mesh)

    def on_best(score, s, epoch, since_best):
        if best_dir is not None:
            checkpoint.save(best_dir, epoch + since_best, s, {"dataset": ds.name, "model": model, "score": score,
                                                 "epoch": epoch, "since_best": since_best}, max_to_keep=1)

    epochs, done = recipe.epochs, int(state.step)
    if workdir is not None and len(val_y) and done and done % spe == 0 \
            and (0 if best is None else best[2] + best[3]) < done // spe:
        # train.fit polls the stop flag right after a chunk, before its end-of-epoch work, so a
        # run stopped exactly at an epoch boundary never evaluated that epoch. Do it now, as fit
        # would have, so the resumed run keeps the same best state as an uninterrupted one.
        epoch = done // spe
        record = {"epoch": epoch, "step": done, **evaluate(state), "evaluated_on_resume": True}
        log(record)
        if best is None or record["val_accuracy"] > best[0]:
            best = (record["val_accuracy"], state, epoch, 0)
        else:
            best = (best[0], best[1], best[2], best[3] + 1)
        on_best(*best)
        if recipe.patience is not None and best[3] >= recipe.patience:
            epochs = epoch  # early stopping ends the run at this epoch

    t0 = time.perf_counter()
    result = train.fit(run_steps, state, k_data, data, streams, hparams, {}, epochs=epochs,
                       steps_per_epoch=spe, chunk=checkpoint_every, evaluate=evaluate,
                       early_stopping_metric="val_accuracy" if len(val_y) else None,
                       patience=recipe.patience, on_chunk=on_chunk, log=log, progress=progress,
                       should_stop=stop, best=best, on_best=on_best)
    if result.interrupted:
        raise Interrupted(f"interrupted at step {int(result.state.step)}: state saved in {ck_dir}; "
                          "run the same command again to resume")
    info = {"train_time_s": time.perf_counter() - t0, "best_epoch": result.best_epoch,
            "epochs_run": len(result.history), "steps": int(result.state.step)}
    return net, result.state, info


def save_model(workdir, net_name: str, ds_name: str, state: TrainState) -> None:
    """Saves the final parameters and BatchNorm statistics (no optimiser state) to ``model/``."""
    state = TrainState(state.params, state.batch_stats, None, state.step)
    model_dir = pathlib.Path(workdir) / "model"
    partial = pathlib.Path(workdir) / ".model.partial"
    parallel.on_primary(lambda: shutil.rmtree(partial, ignore_errors=True), str(partial))
    checkpoint.save(partial, 0, state, {"dataset": ds_name, "model": net_name}, max_to_keep=1)

    def publish():
        if model_dir.exists():  # left by an earlier attempt that stopped before summary.json
            shutil.rmtree(model_dir)
        os.replace(partial, model_dir)

    parallel.on_primary(publish, str(model_dir))


@dataclasses.dataclass
class LoadedRun:
    workdir: pathlib.Path
    info: dict
    summary: dict
    dataset: data_lib.Dataset
    net: Net
    state: TrainState


def load_run(workdir, data_dir: str | None = None, dataset: data_lib.Dataset | None = None) -> LoadedRun:
    """Loads a finished run (train or unlearn) with its dataset and final model.

    Raises:
      RunError: not a finished run directory, or its checkpoint is missing/corrupt/mismatched.
    """
    workdir = pathlib.Path(workdir)
    if not (workdir / "summary.json").is_file():
        raise RunError(f"{workdir} is not a finished jaxunlearn run (no summary.json)")
    info = read_json(workdir / "run.json")
    summary = read_json(workdir / "summary.json")
    for k in ("dataset", "model"):
        if k not in info:
            raise RunError(f"{workdir / 'run.json'} lacks {k!r}")
    ds = dataset or data_lib.load_dataset(info["dataset"], data_dir or info.get("data_dir"),
                                          max_train=info.get("max_train"))
    net = make_net(ds, info["model"])
    # only shapes and dtypes are needed: traced, not compiled or run (~1 s of a first load)
    template = jax.eval_shape(lambda: train.init_state(net, jax.random.key(0), ds.image_shape, train.OptimConfig()))
    template = TrainState(template.params, template.batch_stats, None, template.step)
    try:
        restored, _ = checkpoint.restore(workdir / "model", template,
                                         expect_meta={"dataset": info["dataset"], "model": info["model"]})
    except checkpoint.CheckpointError as e:
        raise RunError(str(e)) from None
    state = jax.tree.map(jnp.asarray, restored)
    return LoadedRun(workdir, info, summary, ds, net, state)
