"""What every unlearning method shares: the problem, settings, phases, heads and the runner.

A gradient method is a list of :class:`Phase` objects (a loss, the streams it reads, a number
of epochs) plus an optional ``prepare`` that computes auxiliary arrays once (a saliency mask,
a teacher, learned noise). :func:`unlearn` runs the phases with the one generic loop of
:mod:`jaxunlearn.train`. A training-free method gives ``apply`` instead.

Two *head modes* compose with every method whose loss is a classifier loss, without copying
its code:

* ``classifier_only``: the last layer is zeroed, BatchNorm runs in inference mode and only
  the ``head`` parameters move (the update mask makes all others bit-identical); the steps
  differentiate the head alone (:meth:`jaxunlearn.state.Net.frozen_encoder`), as the
  authors' ``requires_grad=False`` does, so a gradient norm (clipping) is the head's;
* ``cmf``: the linear head is replaced by a class-mean-feature head recomputed from the
  current encoder at the start of every epoch and frozen during it (Algorithm 2 of the
  paper); only the encoder moves.

Loss functions receive ``batch`` with streams ``"retain"``, ``"forget"``, ``"all"`` (their
union) as needed, each a dict with ``"images"``, ``"labels"``, ``"forget"`` (bool, the sample
is in the forget set) and ``"index"`` (its row in the training split).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import cmf, compiled, train
from jaxunlearn.data import Dataset, ForgetSpec, forget_split
from jaxunlearn.models import HEAD
from jaxunlearn.state import Net, TrainState

MODES = ("full", "classifier_only", "cmf")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Problem:
    """The arrays of one unlearning problem (a pytree; ``num_classes`` is static).

    Index arrays may be padded to a common length (:func:`make_problems`) so that problems of
    unequal sizes stack on a leading axis and vmap; padded rows are marked invalid and are
    never drawn into a batch or counted in a statistic.

    Attributes:
      data: ``"images"`` uint8 ``[N,H,W,C]``, ``"labels"`` int32 ``[N]``, ``"forget"`` bool
        ``[N]`` (the row is in the forget set), ``"index"`` int32 ``[N]``.
      retain: int32 ``[Lr]`` rows of the retain set (padded with row 0 when ``retain_valid``
        marks padding).
      forget: int32 ``[Lf]`` rows of the forget set.
      retain_classes: bool ``[K]``: True for classes that keep samples in the retain set.
      num_classes: ``K`` (static).
      retain_valid, forget_valid: bool ``[Lr]`` / ``[Lf]`` (None: every row valid).
    """

    data: dict
    retain: jax.Array
    forget: jax.Array
    retain_classes: jax.Array
    num_classes: int = dataclasses.field(metadata=dict(static=True))
    retain_valid: jax.Array | None = None
    forget_valid: jax.Array | None = None

    def stream(self, name: str) -> train.Stream:
        """``"retain"``, ``"forget"`` or ``"all"`` (their union) as a :class:`~jaxunlearn.train.Stream`."""
        if name == "all":
            r, f = self.stream("retain"), self.stream("forget")
            return train.Stream(jnp.concatenate([r.index, f.index]), jnp.concatenate([r.valid, f.valid]))
        rows, valid = {"retain": (self.retain, self.retain_valid), "forget": (self.forget, self.forget_valid)}[name]
        return train.Stream(rows, jnp.ones(rows.shape, bool) if valid is None else valid)

    def replace(self, **kw) -> "Problem":
        return dataclasses.replace(self, **kw)


def make_problem(ds: Dataset, spec: ForgetSpec, pad_to: tuple[int, int] | None = None) -> Problem:
    """Builds the :class:`Problem` of forgetting ``spec`` on ``ds``'s training split.

    Args:
      pad_to: ``(retain_length, forget_length)`` to pad the index arrays to (with validity
        masks), so problems of unequal sizes stack; None keeps their own lengths.
    """
    split = forget_split(ds, spec)
    n = len(ds.train_labels)
    forget = np.zeros(n, bool)
    forget[split.train_forget] = True
    retain_classes = np.zeros(ds.num_classes, bool)
    retain_classes[np.unique(ds.train_labels[split.train_retain])] = True
    data = {"images": jnp.asarray(ds.train_images), "labels": jnp.asarray(ds.train_labels),
            "forget": jnp.asarray(forget), "index": jnp.arange(n, dtype=jnp.int32)}
    if pad_to is None:
        return Problem(data, jnp.asarray(split.train_retain, jnp.int32), jnp.asarray(split.train_forget, jnp.int32),
                       jnp.asarray(retain_classes), ds.num_classes)
    r = train.pad_stream(split.train_retain, pad_to[0])
    f = train.pad_stream(split.train_forget, pad_to[1])
    return Problem(data, r.index, f.index, jnp.asarray(retain_classes), ds.num_classes, r.valid, f.valid)


#: How each field of a stacked problem is batched: only the per-problem arrays have the axis.
def problem_axes(problem: Problem) -> Problem:
    """``in_axes`` for ``jax.vmap`` over a stacked :class:`Problem` (shared data unbatched)."""
    data_axes = {k: (0 if k == "forget" else None) for k in problem.data}
    return Problem(data_axes, 0, 0, 0, problem.num_classes, 0 if problem.retain_valid is not None else None,
                   0 if problem.forget_valid is not None else None)


def make_problems(ds: Dataset, specs: Sequence[ForgetSpec]) -> Problem:
    """The problems of ``specs`` padded to common lengths and stacked on a leading axis ``[S]``.

    The image, label and index arrays are shared (not stacked); ``data["forget"]`` ``[S, N]``,
    the index arrays ``[S, L]`` and their validity masks are per problem. Use
    :func:`problem_axes` as the vmap ``in_axes``.
    """
    splits = [forget_split(ds, s) for s in specs]
    pad = (max(len(x.train_retain) for x in splits), max(len(x.train_forget) for x in splits))
    probs = [make_problem(ds, s, pad) for s in specs]
    stack = lambda f: jnp.stack([f(p) for p in probs])
    base = probs[0]
    data = {**base.data, "forget": stack(lambda p: p.data["forget"])}
    return Problem(data, stack(lambda p: p.retain), stack(lambda p: p.forget), stack(lambda p: p.retain_classes),
                   base.num_classes, stack(lambda p: p.retain_valid), stack(lambda p: p.forget_valid))


@dataclasses.dataclass(frozen=True)
class Settings:
    """Static settings of one unlearning run (swept values live in ``hparams``)."""

    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"
    mode: str = "full"
    nesterov: bool = True  # Nesterov momentum (SCRUB's authors use plain heavy-ball momentum)
    clip_norm: float | None = None  # clip the total gradient to this global L2 norm before the step
    step_epochs: int = 3   # schedule "step": the rate is multiplied by step_gamma every step_epochs epochs
    step_gamma: float = 0.2  # of a phase (SalUn + CMF: StepLR(3, 0.2))
    augment_pad: int = 0   # random-crop padding of every stream's images during unlearning (CIFAR: 4)
    augment_flip: bool = False  # random horizontal flips during unlearning (the authors' loaders)
    options: tuple = ()  # method-specific static options as (name, value) pairs

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)

    def replace(self, **kw) -> "Settings":
        opts = dict(self.options)
        for k in list(kw):
            if k not in {f.name for f in dataclasses.fields(self)}:
                opts[k] = kw.pop(k)
        return dataclasses.replace(self, options=tuple(sorted(opts.items())), **kw)


@dataclasses.dataclass(frozen=True)
class Phase:
    """``epochs`` epochs of ``loss`` over the primary stream, drawing from ``batch_sizes``' streams."""

    name: str
    loss: Callable
    batch_sizes: Mapping[str, int]
    primary: str
    epochs: int
    optimizer: str | None = None  # None: the settings' optimizer
    lr: str = "lr"                # the hparam that is this phase's learning rate (UNSIR: "impair_lr")
    refresh_cmf: bool = True      # cmf mode: recompute the CMF head at this phase's epochs (SCRUB's
                                  # min pass after a max pass keeps the max pass's head)


@dataclasses.dataclass(frozen=True)
class Method:
    """An unlearning method.

    Attributes:
      name: registry name.
      summary: one line for ``--help`` and tables.
      hparams: defaults of the swept values (``lr`` and method coefficients).
      settings: default :class:`Settings`.
      phases: ``settings -> [Phase]`` for gradient methods.
      prepare: ``(key, net, state, problem, hparams, settings) -> (state, aux)`` run once before
        the phases (may edit the state, e.g. add a parameter).
      finish: ``(state, aux) -> state`` after the phases.
      apply: ``(key, net, state, problem, hparams, settings) -> state`` for training-free methods.
      streams: ``(problem, settings) -> {name: indices}``; default retain/forget/all.
      from_scratch: re-initialise the parameters first (retrain).
      classifier_loss: whether the loss reads the model's logits (so it composes with
        ``classifier_only`` and ``cmf`` modes).
      host_side: empty for a method whose whole run is traceable (jit / vmap / shard over
        seeds and forget sets); otherwise one line saying which step runs on the host (it
        then runs only through the host driver :func:`unlearn`, and sweeps loop over it).
      options: the typed declaration of the hyper-parameters and options the method reads,
        a tuple of :class:`jaxunlearn.unlearn.options.Spec` (checked against ``hparams`` and
        ``settings`` here; ``()`` declares nothing and skips the typed checks).
    """

    name: str
    summary: str
    hparams: Mapping[str, float]
    settings: Settings = Settings()
    phases: Callable[[Settings], Sequence[Phase]] | None = None
    prepare: Callable | None = None
    finish: Callable | None = None
    apply: Callable | None = None
    streams: Callable | None = None
    from_scratch: bool = False
    classifier_loss: bool = True
    host_side: str = ""
    options: tuple = ()

    def __post_init__(self):
        from jaxunlearn.unlearn import options
        options.check_declaration(self)

    @property
    def training_free(self) -> bool:
        return self.apply is not None

    @property
    def traceable(self) -> bool:
        return not self.host_side


def default_streams(problem: Problem, settings: Settings) -> dict:
    return {n: problem.stream(n) for n in ("retain", "forget", "all")}


# ----------------------------------------------------------------------------- head modes

def head_mask(params, trainable_head: bool, net: Net | None = None):
    """Params-shaped bools: True where the parameter may move (the head, or all but the head).

    The head is at ``net.head_path`` (default ``params["head"]``).
    """
    return (net or Net(None, None, None, head_path=(HEAD,))).head_mask(params, trainable_head)


def zero_head(params, net: Net | None = None):
    """``params`` with the head (at ``net.head_path``, default ``"head"``) set to zeros."""
    net = net or Net(None, None, None, head_path=(HEAD,))
    return net.replace_head(params, jax.tree.map(jnp.zeros_like, net.head_params(params)))


def with_cmf(loss_fn: Callable) -> Callable:
    """Wraps a classifier loss so the network's logits come from ``aux["cmf"]`` (a CMF head)."""

    def loss(net, params, batch_stats, batch, key, hparams, aux):
        return loss_fn(net.with_head(aux["cmf"]), params, batch_stats, batch, key, hparams, aux)

    return loss


def make_cmf_refresh(net: Net, data, num_classes: int, temperature: float = 1.0, batch_size: int | None = None,
                     loop: str | None = None):
    """``(state, epoch, aux) -> aux`` that recomputes the CMF head from the current encoder
    (``batch_size`` images per forward pass, default :func:`jaxunlearn.train.default_predict_batch`).

    Class means use the full training split with true labels (every class). ``loop`` as in
    :func:`jaxunlearn.train.make_predict`; ``"scan"`` is traceable (the pure whole run).

    A call on the very arrays of the previous call (the same parameter and statistics
    objects: e.g. the first epoch's refresh right after a ``prepare`` that left the model as
    it was) returns the head computed then instead of a second forward pass over the split.
    """
    predict = train.make_predict(net, batch_size, loop)
    last = {}  # "leaves": the previous call's parameter / statistics objects, "head": its head

    def refresh(state, epoch, aux):
        leaves = jax.tree.leaves((state.params, state.batch_stats))
        prev = last.get("leaves")
        if prev is not None and len(prev) == len(leaves) and all(a is b for a, b in zip(prev, leaves)):
            return {**aux, "cmf": last["head"]}
        _, feats = predict(state.params, state.batch_stats, data["images"])
        head = cmf.cmf_head(feats["features"], data["labels"], num_classes, temperature)
        last.update(leaves=leaves, head=head)
        return {**aux, "cmf": head}

    return refresh


# ----------------------------------------------------------------------------- runner

@dataclasses.dataclass
class UnlearnResult:
    state: TrainState
    history: list
    runtime_s: float
    aux: dict


def _check(method: Method, settings: Settings) -> None:
    if settings.mode not in MODES:
        raise ValueError(f"unknown mode {settings.mode!r}; choose one of {', '.join(MODES)}")
    if settings.mode != "full" and not method.classifier_loss:
        raise ValueError(f"{method.name} has no classifier loss, so mode {settings.mode!r} does not apply")


def _hparams(method: Method, hparams) -> dict:
    return {k: jnp.asarray(v, jnp.float32) for k, v in {**method.hparams, **(hparams or {})}.items()}


def _run(method: Method, net: Net, settings: Settings, key, state: TrainState, problem: Problem, hp: dict,
         run_phase: Callable, traced: bool, batch_sharding=None):
    """The one body of an unlearning run; ``run_phase`` executes a phase's epochs.

    ``run_phase(i, phase, epoch_fn, runner, state, key, data, streams, hparams, aux, before_epoch)`` returns
    ``(state, history, interrupted)``: :func:`jaxunlearn.train.run_epochs` for the pure run
    (``traced``), :func:`jaxunlearn.train.fit` for the host driver.
    Returns ``(state, aux, history)``.
    """
    k_prep, k_run, k_init = jax.random.split(key, 3)
    state = TrainState(state.params, state.batch_stats, None, jnp.zeros((), jnp.int32))
    if method.apply is not None:
        return method.apply(k_prep, net, state, problem, hp, settings), {}, []
    aux: dict = {}
    if method.from_scratch:
        params, batch_stats = net.init(k_init, problem.data["images"].shape[1:])
        state = TrainState(params, batch_stats, None, state.step)
    run_net = net
    if settings.mode == "classifier_only":
        state = TrainState(zero_head(state.params, net), state.batch_stats, None, state.step)
        run_net = net.frozen_bn()
        aux["update_mask"] = head_mask(state.params, trainable_head=True, net=net)
    before_epoch = None
    if settings.mode == "cmf":
        aux["update_mask"] = head_mask(state.params, trainable_head=False, net=net)
        before_epoch = make_cmf_refresh(net, problem.data, problem.num_classes,
                                        settings.option("cmf_temperature", 1.0), loop="scan" if traced else None)
    if method.prepare is not None:
        prep_net = run_net
        if settings.mode == "cmf":  # e.g. SalUn's saliency is taken through the CMF head
            aux = before_epoch(state, 0, aux)
            prep_net = run_net.with_head(aux["cmf"])
        state, extra = method.prepare(k_prep, prep_net, state, problem, hp, settings)
        if "update_mask" in aux:  # parameters a method adds in prepare (a shadow neuron) may move
            aux["update_mask"] = {**jax.tree.map(lambda _: True, state.params), **aux["update_mask"]}
        if "update_mask" in extra and "update_mask" in aux:  # e.g. SalUn's mask within a head mode
            extra["update_mask"] = jax.tree.map(jnp.logical_and, aux["update_mask"], extra["update_mask"])
        aux.update(extra)
    streams_all = {n: train.as_stream(v) for n, v in (method.streams or default_streams)(problem, settings).items()}
    # only a padded problem (stacked forget sets of unequal sizes) needs steps past a stream's
    # own epoch length masked; unpadded runs (one forget set, vmapped seeds) skip the mask's cost
    padded = problem.retain_valid is not None or problem.forget_valid is not None
    history = []
    for i, phase in enumerate(method.phases(settings)):
        streams = {n: streams_all[n] for n in phase.batch_sizes}
        for n, st in streams.items():
            if st.index.shape[0] == 0:
                raise ValueError(f"{method.name}: stream {n!r} is empty")
        primary = streams[phase.primary]
        max_spe = train.steps_per_epoch(int(primary.index.shape[0]), phase.batch_sizes[phase.primary])
        cfg = train.OptimConfig(phase.optimizer or settings.optimizer, settings.momentum, settings.nesterov,
                                settings.weight_decay, settings.schedule, 0, max_spe * phase.epochs,
                                clip_norm=settings.clip_norm, step_epochs=settings.step_epochs,
                                step_gamma=settings.step_gamma, epochs=phase.epochs)
        def build(phase=phase, cfg=cfg):
            loss = with_cmf(phase.loss) if settings.mode == "cmf" else phase.loss
            # classifier-only steps differentiate the head alone (the authors freeze the rest
            # with requires_grad=False, so e.g. NegGrad+'s clipping norm is the head's)
            step_net = run_net.frozen_encoder() if settings.mode == "classifier_only" else run_net
            step = train.make_step(step_net, loss, cfg, bn_train=settings.mode != "classifier_only",
                                   augment=train.AugmentConfig(settings.augment_pad, settings.augment_flip))
            epoch_fn = train.Epoch(step, dict(phase.batch_sizes), phase.primary, batch_sharding,
                                   masked=traced and padded)
            return epoch_fn, (None if traced else train.jit_runner(epoch_fn))

        if traced:  # traced once by the caller's jit: nothing to reuse
            epoch_fn, runner = build()
        else:       # the host driver: one compiled step per (method, phase, net, config) over runs
            # (a phase's loss depends on the settings only; hyper-parameters and aux are arguments)
            epoch_fn, runner = compiled.cached(
                ("unlearn-phase", method.name, method.phases, i, phase.name, run_net, settings, cfg,
                 tuple(sorted(phase.batch_sizes.items())), phase.primary, batch_sharding), build)
        if phase.lr not in hp:
            raise ValueError(f"{method.name}: phase {phase.name!r} reads the rate {phase.lr!r}, not a hyper-parameter")
        phase_hp = {**hp, "lr": hp[phase.lr], "total_steps": epoch_fn.num_steps(streams) * phase.epochs}
        refresh = before_epoch if phase.refresh_cmf else None
        if before_epoch is not None and refresh is None and "cmf" not in aux:  # keeping a head needs one
            aux = before_epoch(state, 0, aux)
        state = train.fresh_optimizer(state, cfg) if (i == 0 or phase.optimizer) else \
            TrainState(state.params, state.batch_stats, state.opt_state, jnp.zeros((), jnp.int32))
        state, hist, interrupted = run_phase(i, phase, epoch_fn, runner, state, jax.random.fold_in(k_run, i),
                                             problem.data, streams, phase_hp, aux, refresh)
        history += [{"phase": phase.name, **r} for r in hist]
        if interrupted:
            break
    if method.finish is not None:
        state = method.finish(state, aux)
    if settings.mode == "cmf":
        aux = before_epoch(state, -1, aux)  # W from the final encoder (what evaluation uses)
    return state, aux, history


def make_unlearn(method: Method | str, net: Net, settings: Settings | None = None) -> Callable:
    """The pure whole unlearning run of ``method``: ``run(key, state, problem, hparams) -> (state, aux)``.

    Pure and jittable, with no host callbacks: every head mode (``full``,
    ``classifier_only``, ``cmf`` with its per-epoch refresh of the CMF head), the method's
    ``prepare`` (saliency, teacher, noise, masks) and its phases (``lax.scan`` over epochs of
    ``lax.scan`` over steps). So it can be jitted, vmapped over seeds (keys), forget sets
    (stacked padded problems from :func:`make_problems`, ``in_axes=problem_axes(...)``) and
    hyper-parameters, and sharded. The same key gives the same model as :func:`unlearn` (up to
    float summation order).

    Args:
      method: a :class:`Method` or its registry name; it must be traceable (no ``host_side``).
      net: the network (static).
      settings: static settings (default ``method.settings``).

    Returns:
      ``run(key, state, problem, hparams)``: ``key`` a PRNG key; ``state`` the original model
      (a :class:`~jaxunlearn.state.TrainState`; its optimiser state is ignored); ``problem`` a
      :class:`Problem`; ``hparams`` overrides of ``method.hparams`` (scalars or arrays; None
      for the defaults). Returns the unlearned state (fresh optimiser state) and the run's aux
      dict (``aux["cmf"]`` is the CMF head of the final encoder in ``cmf`` mode).

    Raises:
      ValueError: the method runs a step on the host, or the mode does not apply.
    """
    if isinstance(method, str):
        from jaxunlearn.unlearn import get_method
        method = get_method(method)
    settings = settings or method.settings
    _check(method, settings)
    from jaxunlearn.unlearn import options
    options.validate(method, None, settings)
    if method.host_side:
        raise ValueError(f"{method.name} cannot run as a pure function: {method.host_side}; "
                         "use jaxunlearn.unlearn.unlearn() (the host driver)")

    def run_phase(i, phase, epoch_fn, runner, state, key, data, streams, hparams, aux, before_epoch):
        state, _ = train.run_epochs(epoch_fn, state, key, data, streams, hparams, aux, phase.epochs, before_epoch)
        return state, [], False

    def run(key, state, problem, hparams=None):
        options.validate(method, hparams, settings)  # traced values (inside vmap) are not checked
        state, aux, _ = _run(method, net, settings, key, state, problem, _hparams(method, hparams), run_phase,
                             traced=True)
        return state, aux

    return run


def unlearn(method: Method, key: jax.Array, net: Net, state: TrainState, problem: Problem,
            hparams: Mapping[str, Any] | None = None, settings: Settings | None = None, *,
            progress: bool | str = False, log: Callable | None = None, should_stop=None,
            batch_sharding=None, on_chunk: Callable | None = None, chunk: int | None = None) -> UnlearnResult:
    """The host driver: runs ``method`` on ``problem`` from ``state`` with progress, logs and stops.

    The same body as :func:`make_unlearn`'s pure run, with each phase's epochs executed by
    :func:`jaxunlearn.train.fit` (one jitted step per call on CPU). Training-free and
    host-side methods run here.

    Args:
      method: a :class:`Method` (see :data:`jaxunlearn.unlearn.METHODS`).
      key: PRNG key of the run.
      net, state: the original model (never modified: a new state is returned).
      problem: from :func:`make_problem`.
      hparams: overrides of ``method.hparams`` (scalars or arrays).
      settings: overrides ``method.settings``.
      progress, log, should_stop: passed to :func:`jaxunlearn.train.fit`.
      batch_sharding: ``NamedSharding`` of batched arrays (data parallelism over devices).
      on_chunk: ``(state, phase_index, step, aux) -> None`` after every ``chunk`` steps (learning
        curves); ``aux["cmf"]`` holds the CMF head of the current epoch in ``cmf`` mode.

    Returns:
      :class:`UnlearnResult` with the new state (fresh optimiser state, step counts per phase),
      per-epoch history and wall time.
    """
    settings = settings or method.settings
    _check(method, settings)
    from jaxunlearn.unlearn import options
    options.validate(method, hparams, settings)  # unknown names, wrong types, out-of-range values
    t0 = time.perf_counter()

    def run_phase(i, phase, epoch_fn, runner, state, key, data, streams, hparams, aux, before_epoch):
        spe = int(epoch_fn.num_steps(streams))
        result = train.fit(runner, state, key, data, streams, hparams, aux,
                           epochs=phase.epochs, steps_per_epoch=spe, before_epoch=before_epoch,
                           progress=_bar_name(progress, method, phase, settings), should_stop=should_stop,
                           chunk=chunk, on_chunk=(lambda st, n: on_chunk(st, i, n, aux)) if on_chunk else None,
                           log=(lambda r: log({"phase": phase.name, **r})) if log else None)
        return result.state, result.history, result.interrupted

    state, aux, history = _run(method, net, settings, key, state, problem, _hparams(method, hparams), run_phase,
                               traced=False, batch_sharding=batch_sharding)
    jax.block_until_ready(state.params)
    return UnlearnResult(state, history, time.perf_counter() - t0, aux)


def _bar_name(progress, method: Method, phase: Phase, settings: Settings):
    """The progress bar's label: the run's name once, the phase only when it says more."""
    if not isinstance(progress, str):
        return progress
    return progress if phase.name in progress or len(method.phases(settings)) == 1 else f"{progress}: {phase.name}"


# ----------------------------------------------------------------------------- passes outside the loop

def padded_batches(idx: jax.Array, batch_size: int, valid: jax.Array | None = None):
    """Yields ``(rows [batch_size], weights [batch_size])`` covering ``idx`` once, in order.

    The last batch is padded with row 0 at weight 0, so a jitted function of a batch compiles
    once; rows that ``valid`` (bool, like ``idx``) marks as padding also weigh 0. A Python loop
    over static shapes, so it is traceable. For passes over a stream outside the training loop
    (saliency, Fisher importances, activation statistics, adversarial labels).
    """
    n = int(idx.shape[0])
    valid = jnp.ones(n, bool) if valid is None else valid
    for start in range(0, n, batch_size):
        sel = idx[start:start + batch_size]
        w = valid[start:start + batch_size].astype(jnp.float32)
        pad = batch_size - sel.shape[0]
        if pad:
            sel, w = jnp.pad(sel, (0, pad)), jnp.pad(w, (0, pad))
        yield sel, w


def forget_classes(problem: Problem) -> np.ndarray:
    """Sorted class ids of the forget samples (host-side; the forget classes of class forgetting)."""
    return np.unique(np.asarray(problem.data["labels"])[np.asarray(problem.forget)])


# ----------------------------------------------------------------------------- shared losses

def retain_ce(net, params, batch_stats, batch, key, hparams, aux, stream="retain"):
    """Cross-entropy on a stream with true labels (retain fine-tuning, repair phases)."""
    b = batch[stream]
    logits, _, bs = net.forward(params, batch_stats, b["images"], True)
    loss = train.cross_entropy(logits, b["labels"])
    return loss, (bs, {"loss": loss, "accuracy": train.accuracy(logits, b["labels"])})


def random_retain_labels(key, labels, forget, retain_classes, pool: str = "retain"):
    """Replaces the labels of forget samples with random classes.

    ``pool="retain"``: uniform over retain classes (the paper); ``"all"``: uniform over the
    ``K - 1`` classes other than the sample's own. (SalUn's code, ``Classification/unlearn/RL.py``,
    draws ``randint(0, K)`` over all ``K`` classes, the sample's own included, so there about
    ``1/K`` of the forget samples keep their true label; ``"all"`` never does.)
    """
    k = retain_classes.shape[0]
    if pool == "retain":
        logits = jnp.where(retain_classes, 0.0, -jnp.inf)
        draw = jax.random.categorical(key, logits, shape=labels.shape)
    elif pool == "all":
        draw = (labels + jax.random.randint(key, labels.shape, 1, k)) % k
    else:
        raise ValueError(f"unknown label pool {pool!r}; choose retain or all")
    return jnp.where(forget, draw, labels)
