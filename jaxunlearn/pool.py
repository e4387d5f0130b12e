"""Model pools: many retrained and unlearned models of one forget problem, stored as logits.

The competition's forgetting quality (``docs/metrics.md``, :mod:`jaxunlearn.forgetting_quality`)
and U-LiRA compare the distribution over training randomness of an unlearned model's outputs
with that of retrained models, so they need tens to hundreds of models per side. A pool holds
what those metrics read and nothing else:

* per-example logits of every model on the forget set, a fixed sample of the retain set and
  the test set (``[models, examples, classes]``, float32 or float16);
* each model's retain / forget / test accuracy, its seed, and its time with the strategy
  (vmap, devices or loop) that built it.

Layout of a pool workdir ``W`` (every file written atomically)::

  W/pool.json                  what the pool is (dataset, model, forget set, N, batch, recipe...)
  W/examples.npz               the stored rows and labels: forget, retain (sample), test
  W/original/                  the one original model (a ``jaxunlearn train`` run directory)
  W/original_cmf/              its CMF model (cmf_finetune), made when a cmf-mode method asks
  W/retrained/batch-0000.npz   retrained models 0..B-1 (retain set only, seeds 1000 + i)
  W/unlearned/<method>-<mode>/method.json         the method, mode, hyper-parameters, settings
  W/unlearned/<method>-<mode>/batch-0000.npz      unlearned models 0..B-1 (unlearning seeds i)

Models are built ``batch`` at a time: one vmapped (or device-sharded) program per batch when
:func:`jaxunlearn.strategy.choose` measures that faster, else a loop. A batch file is written
only when the batch is complete, so a re-run skips finished batches and redoes a partial one
(its temporary file is discarded); a finished file is never rewritten. One workdir holds one
retrained side and any number of method pools that share it; a pool.json or method.json that
differs from the request is refused with one line.

Seeds: the original trains with ``jax.random.key(original_seed)``; retrained model ``i`` with
seed ``1000 + i`` (what ``jaxunlearn train --seed 1000+i`` on the retain set gives); unlearned
model ``i`` unlearns the original with ``jax.random.key(i)``. With ``floor=True`` the retrained
side has ``2N`` models (the retrain-vs-retrain floor splits it in two).

U-LiRA shadows and targets: :func:`build_ulira_pool` (see its docstring).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import cmf, data as data_lib, runs, strategy as strategy_lib, train
from jaxunlearn.runs import RunError
from jaxunlearn.state import Net, TrainState

POOL_VERSION = 1
RETRAIN_SEED0 = 1000
SPLITS = ("forget", "retain", "test")
ACCURACIES = ("retain", "forget", "test", "test_retain", "test_forget")
OUTPUT_CHUNK = 2048  # images per jitted forward call of a batch of models


# ----------------------------------------------------------------------------- model outputs

@functools.lru_cache(maxsize=8)
def _vmapped_forward(net: Net):
    def one(params, batch_stats, x):
        logits, feats, _ = net.forward(params, batch_stats, x, False)
        return logits, feats["features"]

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def model_outputs(net: Net, params, batch_stats, images, chunk: int | None = None):
    """Logits and penultimate features of ``B`` stacked models on ``images``.

    Args:
      net: the network.
      params, batch_stats: stacked ``[B, ...]`` pytrees.
      images: uint8 ``[n, H, W, C]``.
      chunk: images per jitted call, the last call padded to it, so every call has one
        compiled shape (memory bound: ``B * chunk`` activations); default ``min(2048, n)``.

    Returns:
      ``(logits [B, n, C], features [B, n, D])`` as float32 host arrays (inference mode).
    """
    fwd = _vmapped_forward(net)
    images = np.asarray(images)
    n = images.shape[0]
    chunk = max(1, min(OUTPUT_CHUNK, n)) if chunk is None else int(chunk)
    outs = []
    for start in range(0, n, chunk):
        x = images[start:start + chunk]
        pad = chunk - x.shape[0]
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        lg, ft = fwd(params, batch_stats, jnp.asarray(x))
        outs.append((np.asarray(lg)[:, :x.shape[0] - pad], np.asarray(ft)[:, :x.shape[0] - pad]))
    return np.concatenate([o[0] for o in outs], 1), np.concatenate([o[1] for o in outs], 1)


@functools.lru_cache(maxsize=8)
def _cmf_program(num_classes: int, per_model_weights: bool):
    def one(tf, labels, f, w):
        h = cmf.cmf_head(tf, labels, num_classes, sample_weights=w)
        return cmf.cmf_logits(h, f)

    return jax.jit(jax.vmap(one, in_axes=(0, None, 0, 0 if per_model_weights else None)))


def _cmf_logits(train_feats, train_labels, feats, num_classes, weights=None):
    """CMF logits ``[B, n, C]`` of ``feats [B, n, D]``, each model's head from its ``train_feats
    [B, N, D]`` with true labels (rows weighted by ``weights`` ``[N]`` or ``[B, N]``; default all)."""
    w = jnp.ones(train_feats.shape[1], jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    fn = _cmf_program(int(num_classes), w.ndim == 2)
    return np.asarray(fn(jnp.asarray(train_feats), jnp.asarray(train_labels), jnp.asarray(feats), w))


def _stacked(states: Sequence[TrainState]) -> TrainState:
    """``B`` states as one state with leaves ``[B, ...]`` (parameters, BatchNorm statistics, step)."""
    return strategy_lib.tree_stack([TrainState(s.params, s.batch_stats, None, s.step) for s in states])


def _accuracy(logits, labels, mask=None):
    """``[B]`` accuracy of ``logits [B, n, C]`` on ``labels [n]`` (rows where ``mask``); NaN if none."""
    labels = np.asarray(labels)
    mask = np.ones(labels.shape, bool) if mask is None else np.asarray(mask)
    if not mask.any():
        return np.full(logits.shape[0], np.nan)
    return (logits[:, mask].argmax(-1) == labels[mask]).mean(1)


def batch_record(net: Net, stacked: TrainState, ds: data_lib.Dataset, split: data_lib.ForgetSplit,
                 rows: dict, heads: Sequence[str], dtype: str) -> dict:
    """The arrays a pool stores for ``B`` models: logits on the stored rows and accuracies, per head.

    Args:
      net, stacked: the ``B`` models, one state whose leaves are stacked ``[B, ...]``.
      ds, split: the dataset and the forget problem's split.
      rows: ``{"forget", "retain", "test"}`` int arrays, the stored rows (``forget`` and
        ``retain`` index the train split, ``test`` the test split).
      heads: ``"linear"`` (the model's own head) and/or ``"cmf"`` (a class-mean-feature head
        from each model's train-split features with true labels, as ``evaluate.extract``).
      dtype: ``"float32"`` or ``"float16"`` for the stored logits.

    Returns:
      ``{"<head>.logits.<split>": [B, E, C], "<head>.acc.<name>": [B]}``.
    """
    params, batch_stats = stacked.params, stacked.batch_stats
    chunk = min(OUTPUT_CHUNK, max(len(ds.train_images), len(ds.test_images)))  # one shape: one compilation
    tr_logits, tr_feats = model_outputs(net, params, batch_stats, ds.train_images, chunk)
    te_logits, te_feats = model_outputs(net, params, batch_stats, ds.test_images, chunk)
    out = {}
    test_forget = np.isin(ds.test_labels, split.forget_classes)
    for head in heads:
        if head == "linear":
            tr, te = tr_logits, te_logits
        elif head == "cmf":
            tr = _cmf_logits(tr_feats, ds.train_labels, tr_feats, ds.num_classes)
            te = _cmf_logits(tr_feats, ds.train_labels, te_feats, ds.num_classes)
        else:
            raise ValueError(f"unknown head {head!r}; choose linear or cmf")
        out[f"{head}.logits.forget"] = tr[:, rows["forget"]].astype(dtype)
        out[f"{head}.logits.retain"] = tr[:, rows["retain"]].astype(dtype)
        out[f"{head}.logits.test"] = te[:, rows["test"]].astype(dtype)
        out[f"{head}.acc.retain"] = _accuracy(tr[:, split.train_retain], ds.train_labels[split.train_retain])
        out[f"{head}.acc.forget"] = _accuracy(tr[:, split.train_forget], ds.train_labels[split.train_forget])
        out[f"{head}.acc.test"] = _accuracy(te, ds.test_labels)
        out[f"{head}.acc.test_retain"] = _accuracy(te, ds.test_labels, ~test_forget)
        out[f"{head}.acc.test_forget"] = _accuracy(te, ds.test_labels, test_forget)
    return out


# ----------------------------------------------------------------------------- files

def _write_npz_atomic(path: pathlib.Path, arrays: dict, same_is_fine: bool = False) -> None:
    """Writes ``arrays`` to ``path`` through a temporary file; refuses to replace a finished file.

    With ``same_is_fine`` a file that appeared meanwhile with the same arrays (another part of
    the pool wrote the same deterministic content) is kept and nothing is raised.
    """
    def write(f):
        np.savez(f, **arrays)

    if not runs.write_file_atomic(path, write, binary=True, exclusive=True):
        if same_is_fine and _npz_equals(path, arrays):
            return
        other = ", with other contents," if same_is_fine else ""
        raise RunError(f"{path} appeared{other} while this run made it (two runs on one workdir?); "
                       "the file there was kept and this run's discarded")


def _npz_equals(path: pathlib.Path, arrays: dict) -> bool:
    with np.load(path, allow_pickle=False) as z:
        return set(z.files) == set(arrays) and all(np.array_equal(z[k], np.asarray(v)) for k, v in arrays.items())


def _discard_partials(directory: pathlib.Path) -> int:
    """Removes temporary files of batches that never finished; returns how many."""
    n = 0
    for p in directory.glob(".batch-*.partial"):
        p.unlink()
        n += 1
    return n


def _check_or_write(path: pathlib.Path, info: dict, what: str, hint: str) -> bool:
    """Writes ``info`` to ``path``, or checks it against the file there; True if it existed."""
    clean = json.loads(json.dumps(runs.json_safe(info)))
    ident = {k: v for k, v in clean.items() if k not in ("created", "command")}
    if not path.is_file():
        text = json.dumps({**clean, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)},
                          indent=2, allow_nan=False) + "\n"
        if runs.write_file_atomic(path, lambda f: f.write(text), exclusive=True):
            return False
        # another part of the pool created it meanwhile: check it like any existing file
    old = runs.read_json(path)
    old_ident = {k: v for k, v in old.items() if k not in ("created", "command")}
    if old_ident != ident:
        diff = sorted(k for k in set(old_ident) | set(ident) if old_ident.get(k) != ident.get(k))
        raise RunError(f"{path.parent} holds {what} with other settings ({', '.join(diff)}); {hint}")
    return True


def _digest(*arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- configuration

@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """What a pool is (its identity, checked against ``pool.json`` on every run).

    Attributes:
      dataset, model: as for ``jaxunlearn train``.
      forget: the forget set (``"3"``, ``"0,5"`` or a fraction ``"0.05"`` of random samples).
      forget_seed: seed of a random (fractional) forget set.
      models: ``N``, models per side.
      batch: models per batched program (and per stored file).
      floor: store ``2N`` retrained models (the retrain-vs-retrain floor).
      original_seed: seed of the original model (when it is trained here).
      epochs: training epochs of the original and retrained models (None: the recipe's).
      retain_sample: retain rows stored (a fixed random sample; all if fewer).
      test_sample: test rows stored (None: every test row).
      dtype: stored logits, ``"float32"`` or ``"float16"``.
      heads: heads stored for the retrained side (``"cmf"`` as well lets cmf-mode methods be
        compared with retrained models read through a CMF head).
      max_train: as for ``jaxunlearn train --max-train``.
      original: a finished ``jaxunlearn train`` run to use as the original (None: train one).
    """

    dataset: str = "digits"
    model: str = "mlp"
    forget: str = "3"
    forget_seed: int = 0
    models: int = 64
    batch: int = 16
    floor: bool = False
    original_seed: int = 0
    epochs: int | None = None
    retain_sample: int = 500
    test_sample: int | None = None
    dtype: str = "float32"
    heads: tuple = ("linear", "cmf")
    max_train: int | None = None
    original: str | None = None

    def check(self) -> None:
        if self.models < 2:
            raise ValueError(f"--models must be at least 2 (models per side), got {self.models}")
        if self.batch < 1:
            raise ValueError(f"--batch must be at least 1, got {self.batch}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {self.dtype!r}")
        if self.retain_sample < 1 or (self.test_sample is not None and self.test_sample < 1):
            raise ValueError("retain_sample and test_sample must be positive")
        bad = [h for h in self.heads if h not in ("linear", "cmf")] or ([] if "linear" in self.heads else ["no linear"])
        if bad:
            raise ValueError(f"heads must include linear and may add cmf, got {self.heads}")

    @property
    def num_retrained(self) -> int:
        return 2 * self.models if self.floor else self.models


def retrain_seeds(config: PoolConfig) -> list[int]:
    return [RETRAIN_SEED0 + i for i in range(config.num_retrained)]


def unlearn_seeds(config: PoolConfig) -> list[int]:
    return list(range(config.models))


def _batches(count: int, size: int) -> list[range]:
    return [range(s, min(s + size, count)) for s in range(0, count, size)]


def _method_setup(ds_name: str, method_name: str, mode: str, sets: Sequence[str] = ()):
    """``(method, hparams, settings)``: the dataset's preset, then ``--set`` overrides (typed)."""
    from jaxunlearn.unlearn import get_method, options, presets
    method = get_method(method_name)
    hp_over, opt_over = options.parse_sets(method, list(sets))
    p_hp, p_st = presets.lookup(ds_name, method.name, mode)
    settings = method.settings.replace(mode=mode, **{**p_st, **opt_over})
    hparams = {**p_hp, **hp_over}
    if mode != "full" and not method.classifier_loss:
        raise ValueError(f"{method.name} has no classifier loss, so mode {mode!r} does not apply")
    options.validate(method, hparams, settings)
    return method, hparams, settings


class Pool:
    """An open pool workdir: dataset, original model, stored rows; builds and loads sides."""

    def __init__(self, workdir, config: PoolConfig, data_dir=None, ds: data_lib.Dataset | None = None,
                 log=print):
        config.check()
        self.workdir = pathlib.Path(workdir)
        if self.workdir.exists() and not self.workdir.is_dir():
            raise RunError(f"workdir {self.workdir} exists and is not a directory")
        self.config = config
        self.log = log or (lambda *_: None)
        self.ds = ds or data_lib.load_dataset(config.dataset, data_dir, max_train=config.max_train)
        if self.ds.name != config.dataset:
            raise ValueError(f"dataset {self.ds.name!r} given for a pool of {config.dataset!r}")
        self.spec = data_lib.parse_forget(config.forget, self.ds.num_classes, seed=config.forget_seed)
        self.split = data_lib.forget_split(self.ds, self.spec)
        self.net = runs.make_net(self.ds, config.model)
        self.recipe = runs.recipe_for(self.ds.name, config.model, epochs=config.epochs)
        runs.validate_recipe(self.recipe, len(self.split.train_retain))
        rng = np.random.default_rng(12345)
        retain = self.split.train_retain
        retain = np.sort(rng.choice(retain, min(config.retain_sample, len(retain)), replace=False))
        test = np.arange(len(self.ds.test_labels))
        if config.test_sample is not None and config.test_sample < len(test):
            test = np.sort(rng.choice(test, config.test_sample, replace=False))
        self.rows = {"forget": np.asarray(self.split.train_forget), "retain": retain, "test": test}
        self.labels = {"forget": self.ds.train_labels[self.rows["forget"]],
                       "retain": self.ds.train_labels[retain], "test": self.ds.test_labels[test]}
        info = {"version": POOL_VERSION, **dataclasses.asdict(config), "heads": list(config.heads),
                "forget_classes": list(self.spec.classes), "recipe": dataclasses.asdict(self.recipe),
                "retrain_seeds": [RETRAIN_SEED0, RETRAIN_SEED0 + config.num_retrained - 1],
                "unlearn_seeds": [0, config.models - 1],
                "examples": {k: int(len(v)) for k, v in self.rows.items()},
                "image_shape": list(self.ds.image_shape),
                "data_digest": _digest(self.ds.train_labels, self.ds.test_labels, self.ds.train_images[:64]),
                "rows_digest": _digest(*self.rows.values())}
        _check_or_write(self.workdir / "pool.json", info, "a pool",
                        "choose another --workdir (or match its settings)")
        ex = self.workdir / "examples.npz"
        if not ex.is_file():
            _write_npz_atomic(ex, same_is_fine=True, arrays={**{f"rows.{k}": v for k, v in self.rows.items()},
                                   **{f"labels.{k}": v for k, v in self.labels.items()}})
        self._original: dict = {}
        self.keep_states = 0  # models 0..keep_states-1 of each side also keep their weights
        self.part = (0, 1)    # (i, n): this process builds the batches b with b % n == i

    # ------------------------------------------------------------------ originals

    def original(self, head: str = "linear") -> TrainState:
        """The original model (``head="linear"``) or its CMF model (``"cmf"``), made once."""
        if head in self._original:
            return self._original[head]
        if head == "cmf":
            state = self._cmf_original()
        elif self.config.original is not None:
            src = runs.load_run(self.config.original, dataset=self.ds)
            if src.info.get("model") != self.config.model or src.info.get("head", "linear") != "linear":
                raise RunError(f"{self.config.original} is not a linear-head {self.config.model} run; "
                               "give a `jaxunlearn train` run of the pool's model")
            state = src.state
        else:
            state = self._saved("original", lambda: self._train_original())
        self._original[head] = state
        return state

    def _saved(self, name: str, build):
        d = self.workdir / name
        if (d / "summary.json").is_file():
            return runs.load_run(d, dataset=self.ds).state
        t = time.perf_counter()
        state, info, summary = build()
        runs.prepare_workdir(d, overwrite=True, run_info=info)
        runs.save_model(d, self.config.model, self.ds.name, state)
        runs.write_json_atomic(d / "summary.json", {**summary, "build_time_s": time.perf_counter() - t})
        self.log(f"{name}: built in {time.perf_counter() - t:.1f} s")
        return state

    def _train_original(self):
        c = self.config
        _, state, tinfo = runs.train_model(self.ds, c.model, self.recipe, c.original_seed, progress=False)
        acc = runs.accuracy_of(self.net, state, self.ds.test_images, self.ds.test_labels)
        info = {"kind": "train", "dataset": self.ds.name, "model": c.model, "seed": c.original_seed,
                "recipe": dataclasses.asdict(self.recipe), "max_train": c.max_train, "pool": str(self.workdir)}
        return TrainState(state.params, state.batch_stats, None, state.step), info, {"test_accuracy": acc, **tinfo}

    def _cmf_original(self):
        from jaxunlearn.unlearn import make_problem, unlearn
        method, hparams, settings = _method_setup(self.ds.name, "cmf_finetune", "cmf")
        base = self.original("linear")

        def build():
            r = unlearn(method, jax.random.key(self.config.original_seed), self.net, base,
                        make_problem(self.ds, self.spec), hparams, settings)
            info = {"kind": "unlearn", "dataset": self.ds.name, "model": self.config.model, "method": "cmf_finetune",
                    "mode": "cmf", "head": "cmf", "hparams": {**method.hparams, **hparams},
                    "settings": dataclasses.asdict(settings), "max_train": self.config.max_train}
            return r.state, info, {"runtime_s": r.runtime_s}

        return self._saved("original_cmf", build)

    # ------------------------------------------------------------------ sides

    def _run_batches(self, directory: pathlib.Path, count: int, seeds: list[int], make, heads, label: str,
                     progress: bool = True) -> dict:
        """Builds the missing batches of one side; returns ``{"built", "skipped", "time_s"}``."""
        directory.mkdir(parents=True, exist_ok=True)
        part, parts = self.part
        # a run stopped mid-write leaves a partial file; with several parts another process may
        # be writing one right now, so only a single-part run clears them
        dropped = _discard_partials(directory) if parts == 1 else 0
        if dropped:
            self.log(f"{label}: discarded {dropped} unfinished batch file(s); redoing them")
        built, skipped = [], []
        for b, idx in enumerate(_batches(count, self.config.batch)):
            path = directory / f"batch-{b:04d}.npz"
            if path.is_file():
                skipped.append(b)
                continue
            if b % parts != part:  # another process (host) builds this batch
                continue
            batch_seeds = [seeds[i] for i in idx]
            t0 = time.perf_counter()
            stacked, per_model, plan = make(batch_seeds)  # the batch's models, leaves [B, ...]
            t_models = time.perf_counter() - t0
            compile_s, plan["compile_s"] = plan.get("compile_s", 0.0), 0.0
            rec = batch_record(self.net, stacked, self.ds, self.split, self.rows, heads, self.config.dtype)
            meta = {"batch": b, "models": [int(i) for i in idx], "seeds": batch_seeds,
                    "strategy": plan["strategy"], "strategy_reason": plan["reason"],
                    "measured": plan.get("measured"), "models_time_s": t_models, "compile_s": compile_s,
                    "outputs_time_s": time.perf_counter() - t0 - t_models,
                    "backend": jax.default_backend(), "devices": jax.device_count()}
            _write_npz_atomic(path, {**rec, "seeds": np.asarray(batch_seeds), "index": np.asarray(list(idx)),
                                     "time_per_model_s": np.asarray(per_model, np.float64),
                                     "meta": np.asarray(json.dumps(runs.json_safe(meta)))})
            for j, i in enumerate(idx):
                if i < self.keep_states:
                    save_state(directory / f"state-{i:04d}.npz", strategy_lib.tree_index(stacked, j))
            built.append(b)
            if progress:
                self.log(f"{label} batch {b + 1}/{len(_batches(count, self.config.batch))}: {len(idx)} models "
                         f"in {t_models:.1f} s ({plan['strategy']}, {np.mean(per_model):.2f} s/model"
                         + (f", compiled in {compile_s:.1f} s)" if compile_s else ")"))
        return {"built": built, "skipped": skipped}

    def build_retrained(self, strategy: str = "auto", progress: bool = True) -> dict:
        """Trains the missing retrained models (retain set only) and stores their outputs.

        Batched strategies run one compiled program (``jax.vmap`` of the pure whole run
        :func:`jaxunlearn.train.make_train`, as :func:`jaxunlearn.seeds.train_seeds` does), compiled
        once for every batch of the same size; the loop runs :func:`jaxunlearn.runs.train_model`.
        """
        c = self.config
        params, _ = self.net.init_shapes(self.ds.image_shape)
        plan = strategy_lib.choose(self.net, params, self.ds.image_shape, self.recipe.batch_size,
                                   min(c.batch, c.num_retrained), strategy)
        retain = self.split.train_retain
        if plan["strategy"] != "loop":
            spe = train.steps_per_epoch(len(retain), self.recipe.batch_size)
            fn = train.make_train(self.net, self.ds.image_shape, self.recipe.optim(spe), epochs=self.recipe.epochs,
                                  batch_size=self.recipe.batch_size, augment=self.recipe.augment(),
                                  patience=self.recipe.patience)
            data = {"images": jnp.asarray(self.ds.train_images), "labels": jnp.asarray(self.ds.train_labels),
                    "train_rows": jnp.asarray(retain, jnp.int32)}
            if len(self.ds.val_labels):
                data.update(val_images=jnp.asarray(self.ds.val_images), val_labels=jnp.asarray(self.ds.val_labels))
            program = jax.jit(jax.vmap(fn, in_axes=(0, None, None)))
            hp = {"lr": jnp.float32(self.recipe.lr)}
        compiled: dict = {}

        def make(batch_seeds):
            t0 = time.perf_counter()
            if plan["strategy"] == "loop":
                states = [runs.train_model(self.ds, c.model, self.recipe, s, train_index=retain, progress=False)[1]
                          for s in batch_seeds]
                return _stacked(states), [(time.perf_counter() - t0) / len(batch_seeds)] * len(batch_seeds), plan
            keys = jnp.stack([jax.random.key(s) for s in batch_seeds])
            keys, count = _shard_runs(keys, plan["strategy"])
            fn = _compiled(compiled, program, plan, keys, data, hp)
            t0 = time.perf_counter()
            out = jax.block_until_ready(fn(keys, data, hp))
            return _first(out, count), [(time.perf_counter() - t0) / count] * count, plan

        return self._run_batches(self.workdir / "retrained", c.num_retrained, retrain_seeds(c), make,
                                 list(c.heads), "retrained", progress)

    def method_dir(self, method: str, mode: str) -> pathlib.Path:
        return self.workdir / "unlearned" / f"{method}-{mode}"

    def build_unlearned(self, method_name: str, mode: str = "full", sets: Sequence[str] = (),
                        strategy: str = "auto", progress: bool = True) -> dict:
        """Unlearns the original ``N`` times (seeds ``0..N-1``) with one method and stores the outputs."""
        from jaxunlearn.unlearn import make_problem, make_unlearn, presets, unlearn
        method, hparams, settings = _method_setup(self.ds.name, method_name, mode, sets)
        if method.name == "cmf_finetune":
            raise ValueError("cmf_finetune makes the CMF original; pool a cmf-mode unlearning method instead")
        head = "cmf" if mode == "cmf" else "linear"
        directory = self.method_dir(method.name, mode)
        problem = make_problem(self.ds, self.spec)
        if settings.batch_size > int(problem.retain.shape[0]):
            raise ValueError(f"batch size {settings.batch_size} is larger than the retain set "
                             f"({int(problem.retain.shape[0])})")
        info = {"method": method.name, "mode": mode, "head": head, "hparams": {**method.hparams, **hparams},
                "settings": dataclasses.asdict(settings), "preset": presets.preset_name(self.ds.name),
                "source": "original_cmf" if mode == "cmf" else "original", "sets": list(sets)}
        _check_or_write(directory / "method.json", info, f"a pool of {method.name} ({mode})",
                        "choose another --workdir for other hyper-parameters")
        source = self.original(head)
        plan = strategy_lib.choose(self.net, source.params, self.ds.image_shape, settings.batch_size,
                                   min(self.config.batch, self.config.models), strategy,
                                   traceable=method.traceable)
        if plan["strategy"] != "loop":
            run = make_unlearn(method, self.net, settings)
            program = jax.jit(jax.vmap(lambda k, st, p, hp: run(k, st, p, hp)[0], in_axes=(0, None, None, None)))
            src = TrainState(source.params, source.batch_stats, None, source.step)
        compiled: dict = {}

        def make(batch_seeds):
            t0 = time.perf_counter()
            if plan["strategy"] == "loop":
                states = [unlearn(method, jax.random.key(s), self.net, source, problem, hparams, settings).state
                          for s in batch_seeds]
                return _stacked(states), [(time.perf_counter() - t0) / len(batch_seeds)] * len(batch_seeds), plan
            keys = jnp.stack([jax.random.key(s) for s in batch_seeds])
            keys, count = _shard_runs(keys, plan["strategy"])
            fn = _compiled(compiled, program, plan, keys, src, problem, hparams)
            t0 = time.perf_counter()
            out = jax.block_until_ready(fn(keys, src, problem, hparams))
            return _first(out, count), [(time.perf_counter() - t0) / count] * count, plan

        return self._run_batches(directory, self.config.models, unlearn_seeds(self.config), make, [head],
                                 f"{method.name} ({mode})", progress)


def _compiled(cache: dict, program, plan: dict, *args):
    """``program`` compiled for ``args``' shapes (once per batch size); the compile time is
    added to ``plan["compile_s"]`` so per-model times exclude it."""
    k = int(args[0].shape[0])
    if k not in cache:
        t = time.perf_counter()
        cache[k] = program.lower(*args).compile()
        plan["compile_s"] = plan.get("compile_s", 0.0) + time.perf_counter() - t
    return cache[k]


def _first(stacked, count: int):
    """The first ``count`` models of a stacked state (the rest pad the run axis to the devices)."""
    if jax.tree.leaves(stacked)[0].shape[0] == count:
        return stacked
    return jax.tree.map(lambda x: x[:count], stacked)


def _shard_runs(keys, strategy: str):
    """``(keys, count)``: for ``"devices"`` the run axis padded to the device count and sharded."""
    count = int(keys.shape[0])
    if strategy != "devices":
        return keys, count
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jaxunlearn import parallel
    mesh = parallel.make_mesh()
    extra = strategy_lib.pad_runs(count, mesh.size)
    if extra:
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], extra, 0)])
    return jax.device_put(keys, NamedSharding(mesh, P(parallel.DATA_AXIS))), count


def save_state(path: pathlib.Path, state: TrainState) -> None:
    """Saves one model's parameters and BatchNorm statistics (no optimiser state) as leaves."""
    if path.is_file():  # never rewritten
        return
    st = TrainState(state.params, state.batch_stats, None, state.step)
    _write_npz_atomic(path, {f"leaf{i:03d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(st))})


def load_states(workdir, side: str = "retrained", method: str | None = None, mode: str = "full") -> dict:
    """``{model index: TrainState}`` of the models whose weights a pool kept (``keep_states``).

    ``side="retrained"``, or ``"unlearned"`` with ``method`` and ``mode``.
    """
    workdir = pathlib.Path(workdir)
    cfg = runs.read_json(workdir / "pool.json")
    ds_name, model = cfg["dataset"], cfg["model"]
    from jaxunlearn.models import get_model
    net = Net(get_model(model, data_lib.NUM_CLASSES[ds_name]), *data_lib.NORMALISATION[ds_name])
    d = workdir / "retrained" if side == "retrained" else workdir / "unlearned" / f"{method}-{mode}"
    out = {}
    files = sorted(d.glob("state-*.npz"))
    if files:
        params, bs = net.init_shapes(_image_shape(workdir))
        treedef = jax.tree.structure(TrainState(params, bs, None, jnp.zeros((), jnp.int32)))
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            leaves = [jnp.asarray(z[k]) for k in sorted(z.files)]
        out[int(f.stem.split("-")[1])] = jax.tree.unflatten(treedef, leaves)
    return out


def _image_shape(workdir) -> tuple:
    cfg = runs.read_json(pathlib.Path(workdir) / "pool.json")
    return tuple(cfg["image_shape"])


def _read_side(directory: pathlib.Path, count: int, batch: int, head: str) -> dict:
    files = [directory / f"batch-{b:04d}.npz" for b in range(len(_batches(count, batch)))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise RunError(f"{directory} lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; "
                       "run the same pool command again to finish it")
    parts, metas = [], []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            if f"{head}.logits.forget" not in z.files:
                raise RunError(f"{f} has no {head!r} head outputs")
            parts.append({k: z[k] for k in z.files if k != "meta"})
            metas.append(json.loads(str(z["meta"])))
    cat = lambda k: np.concatenate([p[k] for p in parts])  # noqa: E731
    return {"logits": {s: cat(f"{head}.logits.{s}").astype(np.float32) for s in SPLITS},
            "accuracy": {a: cat(f"{head}.acc.{a}") for a in ACCURACIES},
            "seeds": cat("seeds"), "time_per_model_s": cat("time_per_model_s"), "batches": metas,
            "head": head}


def load_pool(workdir, method: str | None = None, mode: str = "full") -> dict:
    """Reads a pool: the retrained side and (if ``method``) one method's unlearned side.

    The retrained side is read through the head the method's outputs use (``"cmf"`` for a
    cmf-mode method when the pool stored it, else the linear head).

    Returns:
      ``{"config": pool.json, "labels": {"forget" [E_f], "retain" [E_r], "test" [E_t]},
      "rows": the same keys (row indices), "retrained": side, "unlearned": side | None,
      "method": method.json | None}``, each side ``{"logits": {split: [models, examples,
      classes] float32}, "accuracy": {name: [models]}, "seeds", "time_per_model_s",
      "batches": per-batch strategy and times, "head"}``.

    Raises:
      RunError: not a pool, or a side is unfinished.
    """
    workdir = pathlib.Path(workdir)
    if not (workdir / "pool.json").is_file():
        raise RunError(f"{workdir} is not a pool (no pool.json)")
    cfg = runs.read_json(workdir / "pool.json")
    with np.load(workdir / "examples.npz", allow_pickle=False) as z:
        rows = {s: z[f"rows.{s}"] for s in SPLITS}
        labels = {s: z[f"labels.{s}"] for s in SPLITS}
    head = "cmf" if mode == "cmf" and "cmf" in cfg["heads"] else "linear"
    n_ret = 2 * cfg["models"] if cfg["floor"] else cfg["models"]
    out = {"config": cfg, "rows": rows, "labels": labels,
           "retrained": _read_side(workdir / "retrained", n_ret, cfg["batch"], head),
           "unlearned": None, "method": None}
    if method is not None:
        d = workdir / "unlearned" / f"{method}-{mode}"
        if not (d / "method.json").is_file():
            raise RunError(f"{workdir} has no pool of {method} ({mode}); build it with `jaxunlearn pool`")
        out["method"] = runs.read_json(d / "method.json")
        out["unlearned"] = _read_side(d, cfg["models"], cfg["batch"], out["method"]["head"])
    return out


def build_pool(workdir, method: str | None = "random_label", mode: str = "full", *, sets: Sequence[str] = (),
               strategy: str = "auto", data_dir=None, ds: data_lib.Dataset | None = None, progress: bool = True,
               log=print, keep_states: int = 0, part: tuple = (0, 1), **config) -> dict:
    """Builds (or finishes) a pool and returns :func:`load_pool` of it.

    Args:
      workdir: the pool directory (created; an existing one must hold the same pool).
      method, mode: the unlearning method and head mode of the unlearned side (None: only the
        retrained side and the original).
      sets: ``NAME=VALUE`` overrides of the method's hyper-parameters / options (typed).
      strategy: ``"auto"`` (measured per batch), ``"vmap"``, ``"devices"`` or ``"loop"``.
      ds: the dataset, if already loaded.
      keep_states: also save the weights of models ``0..keep_states-1`` of each side built
        by this call (``state-XXXX.npz``; read with :func:`load_states`), e.g. to evaluate
        their features.
      part: ``(i, n)``: build only the batches ``b`` with ``b % n == i`` (``n`` independent
        processes, e.g. one per host, share a workdir on a shared file system; no collective
        communication). The original must exist first (run part 0 alone until it is saved, or
        pass ``original=``); a part other than 0 without it (or, for a cmf-mode method,
        without the CMF original part 0 builds) is refused. Returns None when other parts'
        batches are still missing.
      **config: fields of :class:`PoolConfig` (``dataset``, ``model``, ``forget``, ``models``,
        ``batch``, ``floor``, ...).

    Returns:
      ``load_pool(workdir, method, mode)`` plus ``"built"``: which batches this call built and
      which it found finished.
    """
    cfg = PoolConfig(**config)
    cfg.check()
    if method is not None:  # bad method settings are refused before anything is written
        _method_setup(cfg.dataset, method, mode, sets)
    if not (len(part) == 2 and 0 <= part[0] < part[1]):
        raise ValueError(f"part must be (i, n) with 0 <= i < n, got {part}")
    if (part[0] != 0 and cfg.original is None
            and not (pathlib.Path(workdir) / "original" / "summary.json").is_file()):
        # two processes must never both train (and write) the original
        raise RunError(f"part {part[0]}/{part[1]} needs the pool's original model first: run part 0/{part[1]} "
                       f"until it is saved ({pathlib.Path(workdir) / 'original'}), or give every part --from RUN")
    if (part[0] != 0 and method is not None and mode == "cmf"
            and not (pathlib.Path(workdir) / "original_cmf" / "summary.json").is_file()):
        raise RunError(f"part {part[0]}/{part[1]} of a cmf-mode pool needs the pool's CMF original first: run "
                       f"part 0/{part[1]} until it is saved ({pathlib.Path(workdir) / 'original_cmf'})")
    pool = Pool(workdir, cfg, data_dir=data_dir, ds=ds, log=log)
    pool.keep_states = int(keep_states)
    pool.part = (int(part[0]), int(part[1]))
    pool.original("linear")
    if method is not None and mode == "cmf":
        pool.original("cmf")  # first, so the other parts can start as soon as part 0 has saved it
    built = {"retrained": pool.build_retrained(strategy, progress)}
    if method is not None:
        built["unlearned"] = pool.build_unlearned(method, mode, sets, strategy, progress)
    try:
        out = load_pool(workdir, method, mode)
    except RunError:
        if pool.part[1] > 1:  # other parts are still building
            return None
        raise
    out["built"] = built
    return out


# ----------------------------------------------------------------------------- U-LiRA

def _half_rows(n: int, seed: int):
    """A random half of ``0..n-1`` (sorted) and the bool membership ``[n]``."""
    rng = np.random.default_rng(seed)
    half = np.sort(rng.permutation(n)[: n // 2])
    member = np.zeros(n, bool)
    member[half] = True
    return half, member


def build_ulira_pool(workdir, method: str, mode: str = "full", *, dataset: str = "digits", model: str = "mlp",
                     forget_fraction: float = 0.1, shadows: int = 16, targets: int = 16, epochs: int | None = None,
                     sets: Sequence[str] = (), strategy: str = "auto", ds: data_lib.Dataset | None = None,
                     data_dir=None, log=print) -> dict:
    """Shadow and target models for U-LiRA (Hayes et al., 2024), and the ``phi`` arrays it reads.

    Design (``docs/metrics.md``): a *fixed* sample forget set ``S`` (``forget_fraction`` of the
    training split, seed 0). Model ``k`` (shadow or target) trains on a random half ``H_k`` of
    the training split (half seed ``k``, training seed ``2000 + k``); then

    * shadows ``0..K-1`` and the unlearned targets unlearn ``S ∩ H_k`` from it with the method
      (unlearning key ``k``, retain set ``H_k \\ S``; CMF methods start from ``cmf_finetune`` of
      it on ``H_k``);
    * retrained targets instead train from scratch on ``H_k \\ S`` (seed ``3000 + k``).

    For ``x`` in ``S``: IN = shadows with ``x ∈ H_k`` (unlearned x), OUT = shadows with
    ``x ∉ H_k`` (never saw x). Targets alternate unlearned / retrained (even / odd), so the
    pairs are balanced; a target's example counts only where ``x ∈ H_t``. The halves, the
    original shadows and the retrained targets do not depend on the method and are stored
    once per workdir (``ulira/base``); each method adds its unlearned models.

    Also K *retrained shadows* (shadow k's half minus S, from scratch, seed ``4000 + k``, method-
    independent): none saw any x in S, so they give an OUT side drawn like the retrained
    targets (:func:`ulira_inputs` with ``out="retrained"``).

    Returns:
      ``{"phi_shadow" [K, E], "in_mask" [K, E], "out_mask" [K, E], "phi_target" [T, E],
      "target_unlearned" [T] bool, "target_mask" [T, E], "phi_retrained_shadow" [K, E],
      "forget_rows" [E], "timing"}`` with
      ``phi`` from :func:`jaxunlearn.forgetting_quality.phi` on each model's logits (through
      the CMF head fitted on its own half for cmf-mode methods).
    """
    from jaxunlearn import forgetting_quality as fq
    from jaxunlearn.unlearn.core import Problem
    from jaxunlearn.unlearn.sweep import batched_unlearn
    ds = ds or data_lib.load_dataset(dataset, data_dir)
    workdir = pathlib.Path(workdir)
    method_obj, hparams, settings = _method_setup(ds.name, method, mode, sets)
    cmf_method, cmf_hp, cmf_settings = _method_setup(ds.name, "cmf_finetune", "cmf")
    net = runs.make_net(ds, model)
    recipe = runs.recipe_for(ds.name, model, epochs=epochs)
    n = len(ds.train_labels)
    spec = data_lib.parse_forget(str(forget_fraction), ds.num_classes, seed=0)
    s_rows = data_lib.forget_split(ds, spec).train_forget
    in_s = np.zeros(n, bool)
    in_s[s_rows] = True
    count = shadows + targets
    halves = [_half_rows(n, k) for k in range(count)]
    base_info = {"version": POOL_VERSION, "dataset": ds.name, "model": model, "forget_fraction": forget_fraction,
                 "shadows": shadows, "targets": targets, "recipe": dataclasses.asdict(recipe),
                 "forget_rows": _digest(s_rows), "data_digest": _digest(ds.train_labels, ds.train_images[:64])}
    _check_or_write(workdir / "ulira" / "base.json", base_info, "a U-LiRA pool", "choose another --workdir")
    timing = {}

    def train_rows(rows_list, seeds_):
        """Trains one model per (rows, seed), vmapped over both (rows of equal length)."""
        spe = train.steps_per_epoch(len(rows_list[0]), recipe.batch_size)
        fn = train.make_train(net, ds.image_shape, recipe.optim(spe), epochs=recipe.epochs,
                              batch_size=recipe.batch_size, augment=recipe.augment(), patience=recipe.patience)
        L = max(len(r) for r in rows_list)
        streams = [train.pad_stream(r, L) for r in rows_list]
        rows = train.Stream(jnp.stack([s.index for s in streams]), jnp.stack([s.valid for s in streams]))
        data = {"images": jnp.asarray(ds.train_images), "labels": jnp.asarray(ds.train_labels)}
        if len(ds.val_labels):
            data.update(val_images=jnp.asarray(ds.val_images), val_labels=jnp.asarray(ds.val_labels))
        keys = jnp.stack([jax.random.key(s) for s in seeds_])

        def one(k, r):
            return fn(k, {**data, "train_rows": r}, {"lr": jnp.float32(recipe.lr)})

        out = jax.block_until_ready(jax.jit(jax.vmap(one))(keys, rows))
        return [strategy_lib.tree_index(out, i) for i in range(len(seeds_))]

    def read_leaves(path):
        with np.load(path, allow_pickle=False) as z:
            return [z[f"leaf{i}"] for i in range(len(z.files))]

    def cached_states(path: pathlib.Path, build):
        template = train.init_state(net, jax.random.key(0), ds.image_shape, train.OptimConfig())
        template = TrainState(template.params, template.batch_stats, None, template.step)
        if path.is_file():
            leaves = read_leaves(path)
            treedef = jax.tree.structure(strategy_lib.tree_stack([template]))
            stacked = jax.tree.unflatten(treedef, [jnp.asarray(x) for x in leaves])
            k = int(jax.tree.leaves(stacked)[0].shape[0])
            return [strategy_lib.tree_index(stacked, i) for i in range(k)]
        t = time.perf_counter()
        states = build()
        timing[path.stem] = time.perf_counter() - t
        stacked = _stacked(states)
        _write_npz_atomic(path, {f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(stacked))})
        return states

    base = workdir / "ulira"
    originals = cached_states(base / "originals.npz",
                              lambda: train_rows([h for h, _ in halves], [2000 + k for k in range(count)]))
    retr_ids = [shadows + t for t in range(targets) if t % 2 == 1]
    unl_ids = list(range(shadows)) + [shadows + t for t in range(targets) if t % 2 == 0]
    retrained = cached_states(base / "retrained_targets.npz", lambda: train_rows(
        [np.setdiff1d(halves[k][0], s_rows) for k in retr_ids], [3000 + k for k in retr_ids]))

    def problems(ids):
        ret = [np.setdiff1d(halves[k][0], s_rows) for k in ids]
        fog = [np.intersect1d(halves[k][0], s_rows) for k in ids]
        lr_, lf_ = max(map(len, ret)), max(map(len, fog))
        rs, fs = [train.pad_stream(r, lr_) for r in ret], [train.pad_stream(f, lf_) for f in fog]
        forget_flags = np.stack([np.isin(np.arange(n), f) for f in fog])
        classes = np.stack([np.isin(np.arange(ds.num_classes), ds.train_labels[r]) for r in ret])
        data = {"images": jnp.asarray(ds.train_images), "labels": jnp.asarray(ds.train_labels),
                "forget": jnp.asarray(forget_flags), "index": jnp.arange(n, dtype=jnp.int32)}
        return Problem(data, jnp.stack([r.index for r in rs]), jnp.stack([f.index for f in fs]),
                       jnp.asarray(classes), ds.num_classes, jnp.stack([r.valid for r in rs]),
                       jnp.stack([f.valid for f in fs]))

    def unlearn_all(ids, m, hp, st, sources, seed0):
        keys = jnp.stack([jax.random.key(seed0 + k) for k in ids])
        stacked = _stacked(sources)
        if m.traceable and strategy != "loop":
            out, _ = batched_unlearn(m, net, st, keys, stacked, problems(ids), hp, state_axis=0, problem_axis=0)
            out = jax.block_until_ready(out)
            return [strategy_lib.tree_index(out, i) for i in range(len(ids))]
        from jaxunlearn.unlearn import unlearn
        probs = problems(ids)
        res = []
        for j, k in enumerate(ids):
            p = Problem({**probs.data, "forget": probs.data["forget"][j]}, probs.retain[j], probs.forget[j],
                        probs.retain_classes[j], probs.num_classes, probs.retain_valid[j], probs.forget_valid[j])
            res.append(unlearn(m, jax.random.key(seed0 + k), net, sources[j], p, hp, st).state)
        return res

    sources = [originals[k] for k in unl_ids]
    if mode == "cmf":
        sources = cached_states(base / "cmf_originals.npz",
                                lambda: unlearn_all(unl_ids, cmf_method, cmf_hp, cmf_settings, sources, 5000))
    mdir = base / f"{method_obj.name}-{mode}"
    _check_or_write(mdir / "method.json", {"method": method_obj.name, "mode": mode,
                                           "hparams": {**method_obj.hparams, **hparams},
                                           "settings": dataclasses.asdict(settings)},
                    f"a U-LiRA pool of {method_obj.name} ({mode})", "choose another --workdir")
    unlearned = cached_states(mdir / "unlearned.npz",
                              lambda: unlearn_all(unl_ids, method_obj, hparams, settings, sources, 0))
    # retrained shadows: shadow k's half minus S, trained from scratch (seed 4000 + k), as the
    # retrained targets are; method-independent, stored once
    retrained_shadows = cached_states(base / "retrained_shadows.npz", lambda: train_rows(
        [np.setdiff1d(halves[k][0], s_rows) for k in range(shadows)], [4000 + k for k in range(shadows)]))
    by_id = dict(zip(unl_ids, unlearned))
    by_id.update(dict(zip(retr_ids, retrained)))
    ordered = [by_id[k] for k in range(count)] + list(retrained_shadows)
    both = _stacked(ordered)
    params, batch_stats = both.params, both.batch_stats
    tr_logits, tr_feats = model_outputs(net, params, batch_stats, ds.train_images)
    member = np.stack([m for _, m in halves] + [halves[k][1] for k in range(shadows)])
    if mode == "cmf":
        tr_logits = _cmf_logits(tr_feats, ds.train_labels, tr_feats, ds.num_classes, member.astype(np.float32))
    labels = ds.train_labels[s_rows]
    phi_all = np.asarray(fq.phi(tr_logits[:, s_rows], labels))
    in_half = member[:, s_rows]
    return {"phi_shadow": phi_all[:shadows], "in_mask": in_half[:shadows], "out_mask": ~in_half[:shadows],
            "phi_target": phi_all[shadows:count],
            "target_unlearned": np.asarray([t % 2 == 0 for t in range(targets)]),
            "target_mask": in_half[shadows:count], "phi_retrained_shadow": phi_all[count:],
            "forget_rows": s_rows, "timing": timing}


def ulira_inputs(arrays: dict, out: str = "shadows") -> tuple:
    """The arguments of :func:`jaxunlearn.forgetting_quality.ulira` from :func:`build_ulira_pool`.

    ``out="shadows"``: OUT(x) = unlearned shadows never trained on x (the spec); ``"retrained"``:
    OUT(x) = the retrained shadows (never trained on any x of S), IN as before. Examples
    without an IN or OUT shadow are left out of the target mask.

    Returns:
      ``(phi_shadow, in_mask, out_mask, phi_target, target_unlearned, target_mask)``.
    """
    sh, im, om = arrays["phi_shadow"], arrays["in_mask"], arrays["out_mask"]
    if out == "retrained":
        rs = arrays["phi_retrained_shadow"]
        sh = np.concatenate([sh, rs])
        im = np.concatenate([im, np.zeros(rs.shape, bool)])
        om = np.concatenate([np.zeros(arrays["out_mask"].shape, bool), np.ones(rs.shape, bool)])
    elif out != "shadows":
        raise ValueError(f"out must be 'shadows' or 'retrained', got {out!r}")
    scorable = (im.sum(0) >= 1) & (om.sum(0) >= 1)
    return sh, im, om, arrays["phi_target"], arrays["target_unlearned"], arrays["target_mask"] & scorable[None]
