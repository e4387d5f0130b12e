"""Sweeps: one unlearning method over many forget sets (e.g. every class of a dataset), or
over a grid of its hyper-parameters (:func:`sweep_hparams`, one vmapped run).

:func:`sweep_forget_sets` unlearns each forget set from the same original model with the same
key and returns the results stacked over forget sets. Two strategies give the same numbers
(up to float summation order):

* ``"loop"``: one :func:`~jaxunlearn.unlearn.core.unlearn` call per forget set.
* ``"vmap"``: every run at once, ``jax.vmap`` over the forget sets of one jitted whole run
  (:func:`~jaxunlearn.unlearn.core.unlearn` with a traceable phase loop, ``lax.scan`` over the
  steps of an epoch). It needs forget sets of equal sizes (the index arrays are stacked) and a
  method whose ``prepare``/``streams``/``apply`` are traceable (not UNSIR, SVD or
  classifier_edit, which read the forget classes on the host), and it runs in ``"full"`` mode.

* ``"devices"``: the vmapped run with its forget-set axis sharded over the devices (a 1-D mesh
  of all devices by default), so each device runs its share of the forget sets; the count is
  padded to a multiple of the devices by repeating the last set (dropped from the result).
  Same requirements as ``"vmap"``.

``"auto"`` picks ``"devices"`` on several accelerators (GPU/TPU; virtual CPU devices share the
same cores, so they gain nothing) for equal-size forget sets, ``"vmap"`` for equal sizes on a
model without convolution (no 4-D kernel), else ``"loop"``; if the method turns out not to be
traceable it falls back to the loop and says so in ``"strategy_note"``. Why: on this project's 2-core CPU a vmapped conv
net ran 3.6x slower than a loop (XLA:CPU convolutions batch poorly and ``lax.scan`` over conv
steps is itself ~15x slower there, see :func:`jaxunlearn.train.default_loop`), while small
MLPs batch well. Class forget sets are rarely of equal size (digits: 125..131 per class), so
class sweeps usually loop; equal-size sample-forgetting sets (``fraction`` specs) can vmap.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import NamedSharding, PartitionSpec as P

from jaxunlearn import parallel, train
from jaxunlearn.data import Dataset, ForgetSpec, forget_split, parse_forget
from jaxunlearn.heads import split_accuracy
from jaxunlearn.state import Net, TrainState
from jaxunlearn.unlearn.core import Method, Problem, Settings, make_problem, unlearn

STRATEGIES = ("auto", "loop", "vmap", "devices")
_NOT_TRACEABLE = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                  jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


def output_accuracy(net: Net, state: TrainState, ds: Dataset, spec: ForgetSpec) -> dict:
    """Default evaluation: output accuracy on the retain-class and forget-class test samples.

    NaN where a subset is empty (sample forgetting has no forget test samples).
    """
    logits, _ = train.make_predict(net)(state.params, state.batch_stats, jnp.asarray(ds.test_images))
    split = forget_split(ds, spec)
    acc = split_accuracy(np.asarray(jnp.argmax(logits, -1)), ds.test_labels, split.forget_classes)
    nan = lambda v: float("nan") if v is None else v
    return {"retain_accuracy": nan(acc["retain"]), "forget_accuracy": nan(acc["forget"])}


def _has_conv(params) -> bool:
    return any(jnp.ndim(x) >= 4 for x in jax.tree.leaves(params))


def choose_strategy(state: TrainState, problems: Sequence[Problem]) -> str:
    """``"devices"`` for equal-size forget sets on several accelerators, ``"vmap"`` for equal
    sizes on a model without convolutions, else ``"loop"`` (see the module docstring)."""
    equal = len({(int(p.retain.shape[0]), int(p.forget.shape[0])) for p in problems}) == 1
    if not equal or len(problems) < 2:
        return "loop"
    if jax.device_count() > 1 and jax.default_backend() != "cpu":
        return "devices"
    return "loop" if _has_conv(state.params) else "vmap"


def _traced_fit(run_steps, state, key, data, streams, hparams, aux, *, epochs, steps_per_epoch,
                before_epoch=None, **_):
    """:func:`jaxunlearn.train.fit` without host work: epochs of ``lax.scan`` steps (traceable)."""
    pure = getattr(run_steps, "pure", None) or run_steps.__wrapped__
    for epoch in range(epochs):
        if before_epoch is not None:
            aux = before_epoch(state, epoch, aux)
        state, _ = pure(state, key, data, streams, hparams, aux, epoch, 0, steps_per_epoch)
    return train.FitResult(state, [])


def _vmapped_states(method, key, net, state, problems, hparams, settings, mesh=None):
    """The unlearned states of every problem, stacked on a leading axis, from one vmapped run.

    With a ``mesh``, the forget-set axis is sharded over its devices (padded to a multiple of
    the device count by repeating the last problem; the padding is dropped from the result).
    """
    if (settings or method.settings).mode != "full":
        raise ValueError("the vmap and devices strategies run in mode 'full' only; use strategy='loop'")
    if len({(int(p.retain.shape[0]), int(p.forget.shape[0])) for p in problems}) != 1:
        raise ValueError("the vmap and devices strategies need forget sets of equal sizes; use strategy='loop'")
    count = len(problems)
    if mesh is not None:
        problems = list(problems) + [problems[-1]] * (-count % mesh.size)
    base = problems[0]
    shared = {k: v for k, v in base.data.items() if k != "forget"}

    def one(retain, forget, forget_mask, retain_classes):
        problem = Problem({**shared, "forget": forget_mask}, retain, forget, retain_classes, base.num_classes)
        return unlearn(method, key, net, state, problem, hparams, settings, fit=_traced_fit).state

    stack = lambda f: jnp.stack([f(p) for p in problems])
    args = (stack(lambda p: p.retain), stack(lambda p: p.forget), stack(lambda p: p.data["forget"]),
            stack(lambda p: p.retain_classes))
    if mesh is not None:
        args = jax.device_put(args, NamedSharding(mesh, P(parallel.DATA_AXIS)))
    stacked = jax.jit(jax.vmap(one))(*args)
    return jax.tree.map(lambda x: x[:count], stacked)


def sweep_hparams(method: Method | str, key: jax.Array, net: Net, state: TrainState, problem: Problem,
                  grid: dict, hparams=None, settings: Settings | None = None) -> TrainState:
    """Unlearns once per hyper-parameter setting, all settings in one vmapped run.

    Args:
      method: a :class:`~jaxunlearn.unlearn.core.Method` (or its registry name) whose
        ``prepare``/``streams``/``apply`` are traceable (as for the ``"vmap"`` strategy).
      key, net, state, problem, settings: as for :func:`~jaxunlearn.unlearn.core.unlearn`.
      grid: ``{name: [S] values}``, hyper-parameters of the method, all of length ``S``;
        setting ``s`` uses ``{name: values[s]}``.
      hparams: fixed overrides of the other hyper-parameters.

    Returns:
      The ``S`` unlearned states stacked on a leading axis (``TrainState`` of ``[S, ...]``
      leaves), equal (up to float summation order) to ``S`` separate ``unlearn`` calls.
    """
    if isinstance(method, str):
        from jaxunlearn.unlearn import get_method
        method = get_method(method)
    unknown = sorted(set(grid) - set(method.hparams))
    if unknown:
        raise ValueError(f"{method.name} has no hyper-parameter {', '.join(unknown)}; "
                         f"it has {', '.join(method.hparams)}")
    values = {k: jnp.asarray(v, jnp.float32) for k, v in grid.items()}
    if not values or len({v.shape for v in values.values()}) != 1 or next(iter(values.values())).ndim != 1:
        raise ValueError("grid must map hyper-parameter names to 1-D arrays of one common length")
    if (settings or method.settings).mode != "full":
        raise ValueError("sweep_hparams runs in mode 'full' only; loop over unlearn() for the head modes")

    def one(hp):
        return unlearn(method, key, net, state, problem, {**(hparams or {}), **hp}, settings, fit=_traced_fit).state

    return jax.jit(jax.vmap(one))(values)


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
        (``3``-style strings, class lists, :class:`~jaxunlearn.data.ForgetSpec`).
      hparams, settings: as for :func:`~jaxunlearn.unlearn.core.unlearn`.
      strategy: ``"auto"``, ``"loop"``, ``"vmap"`` or ``"devices"`` (see the module docstring).
      evaluate: ``(net, state, ds, spec) -> {name: float}`` per unlearned model; default
        :func:`output_accuracy`.
      keep_states: also return the unlearned states.
      mesh: the 1-D mesh of the ``"devices"`` strategy (default: all devices).

    Returns:
      ``{"method", "strategy", "strategy_note", "forget_sets" [S] (descriptions),
      "runtime_s" [S], <each key of evaluate> [S] arrays, "states" (if keep_states)}``.
      Under ``"vmap"`` and ``"devices"`` ``runtime_s`` is the whole batched run (compilation
      included) divided by ``S``.
    """
    if isinstance(method, str):
        from jaxunlearn.unlearn import get_method
        method = get_method(method)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    specs = [parse_forget(s if isinstance(s, (str, ForgetSpec)) else [s] if np.isscalar(s) else s,
                          ds.num_classes) for s in forget_specs]
    if not specs:
        raise ValueError("no forget sets to sweep")
    evaluate = evaluate or output_accuracy
    problems = [make_problem(ds, s) for s in specs]
    chosen = choose_strategy(state, problems) if strategy == "auto" else strategy
    note = ""
    states, runtimes = None, None
    if chosen in ("vmap", "devices"):
        t0 = time.perf_counter()
        if chosen == "devices":
            mesh = mesh or parallel.make_mesh()
            note = f"forget sets sharded over {mesh.size} devices"
        try:
            stacked = _vmapped_states(method, key, net, state, problems, hparams, settings,
                                      mesh if chosen == "devices" else None)
            jax.block_until_ready(stacked)
            states = [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(len(specs))]
            runtimes = [(time.perf_counter() - t0) / len(specs)] * len(specs)
        except _NOT_TRACEABLE as e:
            if strategy in ("vmap", "devices"):
                raise ValueError(f"{method.name} cannot be vmapped (its preparation reads arrays on the host); "
                                 "use strategy='loop'") from e
            note = f"{method.name} is not traceable, so {chosen} fell back to the loop"
            chosen = "loop"
    if chosen == "loop":
        states, runtimes = [], []
        for p in problems:
            r = unlearn(method, key, net, state, p, hparams, settings)
            states.append(r.state)
            runtimes.append(r.runtime_s)
    records = [evaluate(net, s, ds, spec) for s, spec in zip(states, specs)]
    out = {"method": method.name, "strategy": chosen, "strategy_note": note,
           "forget_sets": [s.describe() for s in specs], "runtime_s": np.asarray(runtimes)}
    out.update({k: np.asarray([r[k] for r in records]) for k in records[0]})
    if keep_states:
        out["states"] = states
    return out
