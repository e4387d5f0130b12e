"""Seeds as an axis: parse seed lists, train one original model per seed in one batched run.

Training S seeds is ``jax.vmap`` over keys of the pure whole run
:func:`jaxunlearn.train.make_train` (with the validation-best selection and patience of the
host driver), sharded over devices, or a loop of :func:`jaxunlearn.runs.train_model`; which
one is measured on the backend (:func:`jaxunlearn.strategy.choose`). Seed ``s`` always uses
``jax.random.key(s)``, so a seed's model is the same whichever strategy trained it (up to
float summation order) and the same as ``jaxunlearn train --seed s``.

Unlearning over seeds is :func:`jaxunlearn.unlearn.sweep.unlearn_seeds`.
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxunlearn import data as data_lib, parallel, runs, strategy as strategy_lib, train
from jaxunlearn.state import Net, TrainState


def parse_seeds(text) -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``, ``"0,3,7"`` -> ``[0, 3, 7]``, ``"5"`` -> ``[5]`` (also ints/lists).

    Raises:
      ValueError: not a seed list, a negative seed, a reversed range, or a repeated seed.
    """
    if isinstance(text, int):
        text = str(text)
    if isinstance(text, (list, tuple)):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in str(text).replace(" ", "").split(","):
            try:
                if "-" in part[1:]:
                    lo, hi = part.split("-", 1)
                    lo, hi = int(lo), int(hi)
                    if hi < lo:
                        raise ValueError
                    seeds += list(range(lo, hi + 1))
                else:
                    seeds.append(int(part))
            except ValueError:
                raise ValueError(f"--seeds expects seeds like 0-4 or 0,3,7 (non-negative integers), "
                                 f"got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds expects non-negative seeds like 0-4 or 0,3,7, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {text!r}")
    return seeds


def seed_dir_name(seed: int) -> str:
    """Sub-directory of one seed's run inside a multi-seed workdir."""
    return f"seed-{seed}"


def train_seeds(ds: data_lib.Dataset, model: str, recipe: runs.Recipe, seeds: Sequence[int], *,
                train_index: np.ndarray | None = None, strategy: str = "auto", mesh=None,
                progress: bool | str = False, workdirs: Sequence | None = None,
                stop: runs.StopFlag | None = None) -> tuple[Net, list[TrainState], dict]:
    """Trains one model per seed on ``ds`` (or its subset ``train_index``).

    Args:
      ds, model, recipe: as for :func:`jaxunlearn.runs.train_model`.
      seeds: seed ``s`` trains with ``jax.random.key(s)``.
      train_index: rows of the training split to train on (e.g. a retain set).
      strategy: ``"auto"`` (measured), ``"vmap"``, ``"devices"`` or ``"loop"``.
      mesh: the loop strategy's data-parallel mesh (``--devices``); the devices strategy
        shards the seed axis over all devices.
      progress: progress bar label (loop strategy; the batched run is one program).
      workdirs: one directory per seed for the loop strategy's checkpoints (resumable).
      stop: a :class:`~jaxunlearn.runs.StopFlag` polled by the loop strategy.

    Returns:
      ``(net, states, info)``: the final (validation-best) state per seed and
      ``{"strategy", "strategy_reason", "measured", "train_time_s": [S], "seeds"}``.
    """
    seeds = [int(s) for s in seeds]
    net = runs.make_net(ds, model)
    idx = np.arange(len(ds.train_labels)) if train_index is None else np.asarray(train_index)
    runs.validate_recipe(recipe, len(idx))
    params, _ = net.init_shapes(ds.image_shape)
    plan = strategy_lib.choose(net, params, ds.image_shape, recipe.batch_size, len(seeds), strategy)
    info = {"seeds": seeds, "strategy": plan["strategy"], "strategy_reason": plan["reason"],
            "measured": plan["measured"]}
    if plan["strategy"] == "loop":
        states, times, extra = [], [], []
        for i, seed in enumerate(seeds):
            label = f"{progress} seed {seed}" if isinstance(progress, str) else progress
            _, state, tinfo = runs.train_model(ds, model, recipe, seed, None if workdirs is None else workdirs[i],
                                               train_index=train_index, progress=label, mesh=mesh, stop=stop)
            states.append(state)
            times.append(tinfo["train_time_s"])
            extra.append(tinfo)
        return net, states, {**info, "train_time_s": times, "runs": extra}
    t0 = time.perf_counter()
    spe = train.steps_per_epoch(len(idx), recipe.batch_size)
    fn = train.make_train(net, ds.image_shape, recipe.optim(spe), epochs=recipe.epochs,
                          batch_size=recipe.batch_size, augment=recipe.augment(), patience=recipe.patience)
    data = {"images": jnp.asarray(ds.train_images), "labels": jnp.asarray(ds.train_labels),
            "train_rows": jnp.asarray(idx, jnp.int32)}
    if len(ds.val_labels):
        data.update(val_images=jnp.asarray(ds.val_images), val_labels=jnp.asarray(ds.val_labels))
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    count = len(seeds)
    if plan["strategy"] == "devices":
        dev_mesh = parallel.make_mesh()
        extra = strategy_lib.pad_runs(count, dev_mesh.size)
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], extra, 0)]) if extra else keys
        keys = jax.device_put(keys, NamedSharding(dev_mesh, P(parallel.DATA_AXIS)))
        info["strategy_reason"] += f"; seeds sharded over {dev_mesh.size} devices"
    stacked = jax.jit(jax.vmap(fn, in_axes=(0, None, None)))(keys, data, {"lr": jnp.float32(recipe.lr)})
    stacked = jax.block_until_ready(stacked)
    states = [strategy_lib.tree_index(stacked, i) for i in range(count)]
    per = (time.perf_counter() - t0) / count
    return net, states, {**info, "train_time_s": [per] * count,
                         "runs": [{"train_time_s": per, "steps": int(s.step)} for s in states]}
