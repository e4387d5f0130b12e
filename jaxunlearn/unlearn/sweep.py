"""Sweeps: one unlearning method over many seeds, forget sets or hyper-parameter settings.

Every sweep is the pure whole run of :func:`~jaxunlearn.unlearn.core.make_unlearn` batched
over an axis, or a loop of the host driver :func:`~jaxunlearn.unlearn.core.unlearn`; the
strategies give the same models up to float summation order:

* ``"vmap"``: one jitted program, ``jax.vmap`` over the runs. Forget sets of unequal sizes
  batch: their index arrays are padded to a common length with a validity mask
  (:func:`~jaxunlearn.unlearn.core.make_problems`), padded rows are never drawn, and steps
  past a run's own epoch length leave its state unchanged.
* ``"devices"``: the vmapped program with the run axis sharded over a 1-D mesh of devices
  (the run count padded to a multiple of the device count; the padding is dropped).
* ``"loop"``: one host-driver call per run.

``"auto"`` measures the backend (:func:`jaxunlearn.strategy.choose`) and records what it
measured in ``"strategy_reason"``. A method with a host-side step (``Method.host_side``, e.g.
UNSIR, SVD, classifier_edit) always loops; nothing is detected from exceptions.

* :func:`sweep_forget_sets`: one method from one model over forget sets (e.g. every class).
* :func:`unlearn_seeds`: one method over seeds (one key per run), from one original model or
  from one original model per seed, on one or several forget sets.
* :func:`sweep_hparams`: one vmapped run over a grid of a method's hyper-parameters.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import NamedSharding, PartitionSpec as P

from jaxunlearn import parallel, strategy as strategy_lib, train
from jaxunlearn.data import Dataset, ForgetSpec, forget_split, parse_forget
from jaxunlearn.heads import split_accuracy
from jaxunlearn.state import Net, TrainState
from jaxunlearn.unlearn.core import (Method, Problem, Settings, make_problem, make_problems, make_unlearn,
                                     problem_axes, unlearn)

STRATEGIES = strategy_lib.STRATEGIES


def output_accuracy(net: Net, state: TrainState, ds: Dataset, spec: ForgetSpec) -> dict:
    """Default evaluation: output accuracy on the retain-class and forget-class test samples.

    NaN where a subset is empty (sample forgetting has no forget test samples).
    """
    logits, _ = train.make_predict(net)(state.params, state.batch_stats, jnp.asarray(ds.test_images))
    split = forget_split(ds, spec)
    acc = split_accuracy(np.asarray(jnp.argmax(logits, -1)), ds.test_labels, split.forget_classes)
    nan = lambda v: float("nan") if v is None else v
    return {"retain_accuracy": nan(acc["retain"]), "forget_accuracy": nan(acc["forget"])}


def _get(method):
    if isinstance(method, str):
        from jaxunlearn.unlearn import get_method
        return get_method(method)
    return method


def _plan(method: Method, net: Net, state: TrainState, ds: Dataset, runs: int, requested: str,
          settings: Settings | None) -> dict:
    settings = settings or method.settings
    return strategy_lib.choose(net, state.params, ds.image_shape, settings.batch_size, runs, requested,
                               traceable=method.traceable)


def batched_unlearn(method: Method, net: Net, settings: Settings | None, keys, states, problems: Problem,
                    hparams=None, *, state_axis=None, key_axis=0, problem_axis=0, mesh=None):
    """Stacked unlearned states of one vmapped (optionally sharded) pure run.

    Args:
      keys: PRNG keys ``[S]`` (``key_axis=0``) or one key (``key_axis=None``).
      states: the original model (``state_axis=None``) or models stacked ``[S]`` (``0``).
      problems: a stacked problem ``[S]`` from :func:`make_problems` (``problem_axis=0``) or one
        problem (``None``).
      mesh: shard the run axis over this 1-D mesh (runs padded to a multiple of its size).

    Returns:
      ``(states [S], aux [S])`` stacked pytrees.
    """
    run = make_unlearn(method, net, settings)
    count = _count(keys, key_axis, states, state_axis, problems, problem_axis)
    if mesh is not None:
        extra = strategy_lib.pad_runs(count, mesh.size)
        sharding = NamedSharding(mesh, P(parallel.DATA_AXIS))
        shard = lambda x: jax.device_put(_pad(x, extra), sharding)
        keys = shard(keys) if key_axis is not None else keys
        states = jax.tree.map(shard, states) if state_axis is not None else states
        if problem_axis is not None:
            problems = problems.replace(data={**problems.data, "forget": shard(problems.data["forget"])},
                                        retain=shard(problems.retain), forget=shard(problems.forget),
                                        retain_classes=shard(problems.retain_classes),
                                        retain_valid=shard(problems.retain_valid),
                                        forget_valid=shard(problems.forget_valid))
    axes = (key_axis, state_axis, None if problem_axis is None else problem_axes(problems), None)
    out = jax.jit(jax.vmap(run, in_axes=axes))(keys, states, problems, hparams)
    return jax.tree.map(lambda x: x[:count], out)


def _pad(x, extra):
    return x if not extra else jnp.concatenate([x, jnp.repeat(x[-1:], extra, 0)])


def _count(keys, key_axis, states, state_axis, problems, problem_axis) -> int:
    if key_axis is not None:
        return int(keys.shape[0])
    if state_axis is not None:
        return int(jax.tree.leaves(states.params)[0].shape[0])
    return int(problems.retain.shape[0])


def sweep_hparams(method: Method | str, key: jax.Array, net: Net, state: TrainState, problem: Problem,
                  grid: dict, hparams=None, settings: Settings | None = None) -> TrainState:
    """Unlearns once per hyper-parameter setting, all settings in one vmapped run.

    Args:
      method: a traceable :class:`~jaxunlearn.unlearn.core.Method` (or its registry name).
      key, net, state, problem, settings: as for :func:`~jaxunlearn.unlearn.core.unlearn`.
      grid: ``{name: [S] values}``, hyper-parameters of the method, all of length ``S``;
        setting ``s`` uses ``{name: values[s]}``.
      hparams: fixed overrides of the other hyper-parameters.

    Returns:
      The ``S`` unlearned states stacked on a leading axis (``TrainState`` of ``[S, ...]``
      leaves), equal (up to float summation order) to ``S`` separate ``unlearn`` calls.
    """
    method = _get(method)
    unknown = sorted(set(grid) - set(method.hparams))
    if unknown:
        raise ValueError(f"{method.name} has no hyper-parameter {', '.join(unknown)}; "
                         f"it has {', '.join(method.hparams)}")
    values = {k: jnp.asarray(v, jnp.float32) for k, v in grid.items()}
    if not values or len({v.shape for v in values.values()}) != 1 or next(iter(values.values())).ndim != 1:
        raise ValueError("grid must map hyper-parameter names to 1-D arrays of one common length")
    run = make_unlearn(method, net, settings)
    return jax.jit(jax.vmap(lambda hp: run(key, state, problem, {**(hparams or {}), **hp})[0]))(values)


def sweep_forget_sets(method: Method, key: jax.Array, net: Net, state: TrainState, ds: Dataset,
                      forget_specs: Sequence, hparams=None, settings: Settings | None = None,
                      strategy: str = "auto", evaluate: Callable | None = None, *,
                      keep_states: bool = False, mesh=None) -> dict:
    """Unlearns every forget set in ``forget_specs`` from ``state`` and stacks the results.

    Args:
      method: a :class:`~jaxunlearn.unlearn.core.Method` (or its registry name).
      key: the PRNG key of every run (each forget set gets the same key, as separate
        :func:`~jaxunlearn.unlearn.core.unlearn` calls with this key would).
      net, state: the original model.
      ds: the dataset.
      forget_specs: forget sets, anything :func:`jaxunlearn.data.parse_forget` accepts
        (``3``-style strings, class lists, :class:`~jaxunlearn.data.ForgetSpec`); any sizes.
      hparams, settings: as for :func:`~jaxunlearn.unlearn.core.unlearn`.
      strategy: ``"auto"``, ``"loop"``, ``"vmap"`` or ``"devices"`` (see the module docstring).
      evaluate: ``(net, state, ds, spec) -> {name: float}`` per unlearned model; default
        :func:`output_accuracy`.
      keep_states: also return the unlearned states.
      mesh: the 1-D mesh of the ``"devices"`` strategy (default: all devices).

    Returns:
      ``{"method", "strategy", "strategy_reason", "measured", "forget_sets" [S] (descriptions),
      "runtime_s" [S], <each key of evaluate> [S] arrays, "states" (if keep_states)}``.
      Under ``"vmap"`` and ``"devices"`` ``runtime_s`` is the whole batched run (compilation
      included) divided by ``S``.
    """
    method = _get(method)
    specs = [parse_forget(s if isinstance(s, (str, ForgetSpec)) else [s] if np.isscalar(s) else s,
                          ds.num_classes) for s in forget_specs]
    if not specs:
        raise ValueError("no forget sets to sweep")
    evaluate = evaluate or output_accuracy
    for s in specs:
        forget_split(ds, s)  # refuses empty / out-of-range forget sets before any work
    plan = _plan(method, net, state, ds, len(specs), strategy, settings)
    chosen = plan["strategy"]
    t0 = time.perf_counter()
    if chosen in ("vmap", "devices"):
        if chosen == "devices":
            mesh = mesh or parallel.make_mesh()
            plan["reason"] += f"; forget sets sharded over {mesh.size} devices"
        stacked, _ = batched_unlearn(method, net, settings, key, state, make_problems(ds, specs), hparams,
                                     key_axis=None, mesh=mesh if chosen == "devices" else None)
        jax.block_until_ready(stacked)
        states = [strategy_lib.tree_index(stacked, i) for i in range(len(specs))]
        runtimes = [(time.perf_counter() - t0) / len(specs)] * len(specs)
    else:
        states, runtimes = [], []
        for s in specs:
            r = unlearn(method, key, net, state, make_problem(ds, s), hparams, settings)
            states.append(r.state)
            runtimes.append(r.runtime_s)
    records = [evaluate(net, s, ds, spec) for s, spec in zip(states, specs)]
    out = {"method": method.name, "strategy": chosen, "strategy_reason": plan["reason"],
           "strategy_note": plan["reason"], "measured": plan["measured"],
           "forget_sets": [s.describe() for s in specs], "runtime_s": np.asarray(runtimes)}
    out.update({k: np.asarray([r[k] for r in records]) for k in records[0]})
    if keep_states:
        out["states"] = states
    return out


def unlearn_seeds(method: Method | str, seeds: Sequence[int], net: Net, states, problem: Problem,
                  hparams=None, settings: Settings | None = None, strategy: str = "auto", *,
                  image_shape=None, mesh=None, progress: bool | str = False) -> dict:
    """Unlearns one run per seed (key ``jax.random.key(seed)``) and returns the states.

    Args:
      method: a :class:`~jaxunlearn.unlearn.core.Method` or its name.
      seeds: the run seeds ``[S]``.
      net: the network.
      states: one original model for every seed, or a list of ``S`` originals (seed ``i``
        unlearns ``states[i]``, e.g. the original trained with that seed).
      problem: the forget problem (from :func:`make_problem`).
      hparams, settings: as for :func:`~jaxunlearn.unlearn.core.unlearn`.
      strategy: as for :func:`sweep_forget_sets`.
      image_shape: ``(H, W, C)`` for the measurement (default: the problem's images).

    Returns:
      ``{"states": [S] TrainStates, "runtime_s": [S], "strategy", "strategy_reason", "measured"}``.
      Equal, up to float summation order, to separate ``unlearn`` calls with each seed's key.
    """
    method = _get(method)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds to run")
    per_seed = isinstance(states, (list, tuple)) and not isinstance(states, TrainState)
    if per_seed and len(states) != len(seeds):
        raise ValueError(f"{len(states)} original models for {len(seeds)} seeds; give one per seed or one for all")
    first = states[0] if per_seed else states
    settings = settings or method.settings
    plan = strategy_lib.choose(net, first.params, image_shape or problem.data["images"].shape[1:],
                               settings.batch_size, len(seeds), strategy, traceable=method.traceable)
    t0 = time.perf_counter()
    if plan["strategy"] in ("vmap", "devices"):
        keys = jnp.stack([jax.random.key(s) for s in seeds])
        st = strategy_lib.tree_stack([TrainState(s.params, s.batch_stats, None, s.step) for s in states]) \
            if per_seed else TrainState(first.params, first.batch_stats, None, first.step)
        use_mesh = (mesh or parallel.make_mesh()) if plan["strategy"] == "devices" else None
        stacked, _ = batched_unlearn(method, net, settings, keys, st, problem, hparams,
                                     state_axis=0 if per_seed else None, problem_axis=None, mesh=use_mesh)
        jax.block_until_ready(stacked)
        out_states = [strategy_lib.tree_index(stacked, i) for i in range(len(seeds))]
        runtimes = [(time.perf_counter() - t0) / len(seeds)] * len(seeds)
    else:
        out_states, runtimes = [], []
        for i, seed in enumerate(seeds):
            r = unlearn(method, jax.random.key(seed), net, states[i] if per_seed else first, problem, hparams,
                        settings, progress=f"{progress} seed {seed}" if isinstance(progress, str) else progress)
            out_states.append(r.state)
            runtimes.append(r.runtime_s)
    return {"states": out_states, "runtime_s": runtimes, "strategy": plan["strategy"],
            "strategy_reason": plan["reason"], "measured": plan["measured"]}
