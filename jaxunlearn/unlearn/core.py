"""What every unlearning method shares: the problem, settings, phases, heads and the runner.

A gradient method is a list of :class:`Phase` objects (a loss, the streams it reads, a number
of epochs) plus an optional ``prepare`` that computes auxiliary arrays once (a saliency mask,
a teacher, learned noise). :func:`unlearn` runs the phases with the one generic loop of
:mod:`jaxunlearn.train`. A training-free method gives ``apply`` instead.

Two *head modes* compose with every method whose loss is a classifier loss, without copying
its code:

* ``classifier_only``: the last layer is zeroed, BatchNorm runs in inference mode and only
  the ``head`` parameters move (the update mask makes all others bit-identical);
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

from jaxunlearn import cmf, train
from jaxunlearn.data import Dataset, ForgetSpec, forget_split
from jaxunlearn.models import HEAD
from jaxunlearn.state import Net, TrainState

MODES = ("full", "classifier_only", "cmf")


class Problem(NamedTuple):
    """The arrays of one unlearning problem (all on device, all traced)."""

    data: dict            # "images" uint8 [N,H,W,C], "labels" int32 [N], "forget" bool [N], "index" int32 [N]
    retain: jax.Array     # int32 [Nr] rows of the retain set
    forget: jax.Array     # int32 [Nf] rows of the forget set
    retain_classes: jax.Array  # bool [K]: True for classes that keep samples in the retain set
    num_classes: int


def make_problem(ds: Dataset, spec: ForgetSpec) -> Problem:
    """Builds the :class:`Problem` of forgetting ``spec`` on ``ds``'s training split."""
    split = forget_split(ds, spec)
    n = len(ds.train_labels)
    forget = np.zeros(n, bool)
    forget[split.train_forget] = True
    retain_classes = np.zeros(ds.num_classes, bool)
    retain_classes[np.unique(ds.train_labels[split.train_retain])] = True
    data = {"images": jnp.asarray(ds.train_images), "labels": jnp.asarray(ds.train_labels),
            "forget": jnp.asarray(forget), "index": jnp.arange(n, dtype=jnp.int32)}
    return Problem(data, jnp.asarray(split.train_retain, jnp.int32), jnp.asarray(split.train_forget, jnp.int32),
                   jnp.asarray(retain_classes), ds.num_classes)


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
    return {"retain": problem.retain, "forget": problem.forget,
            "all": jnp.concatenate([problem.retain, problem.forget])}


# ----------------------------------------------------------------------------- head modes

def head_mask(params, trainable_head: bool):
    """Params-shaped bools: True where the parameter may move (the head, or all but the head)."""
    return {k: jax.tree.map(lambda _: (k == HEAD) == trainable_head, v) for k, v in params.items()}


def zero_head(params):
    return {**params, HEAD: jax.tree.map(jnp.zeros_like, params[HEAD])}


def with_cmf(loss_fn: Callable) -> Callable:
    """Wraps a classifier loss so the network's logits come from ``aux["cmf"]`` (a CMF head)."""

    def loss(net, params, batch_stats, batch, key, hparams, aux):
        return loss_fn(net.with_head(aux["cmf"]), params, batch_stats, batch, key, hparams, aux)

    return loss


def make_cmf_refresh(net: Net, data, num_classes: int, temperature: float = 1.0, batch_size: int = 1000):
    """``(state, epoch, aux) -> aux`` that recomputes the CMF head from the current encoder.

    Class means use the full training split with true labels (every class).
    """
    predict = train.make_predict(net, batch_size)

    def refresh(state, epoch, aux):
        _, feats = predict(state.params, state.batch_stats, data["images"])
        return {**aux, "cmf": cmf.cmf_head(feats["features"], data["labels"], num_classes, temperature)}

    return refresh


# ----------------------------------------------------------------------------- runner

@dataclasses.dataclass
class UnlearnResult:
    state: TrainState
    history: list
    runtime_s: float
    aux: dict


def unlearn(method: Method, key: jax.Array, net: Net, state: TrainState, problem: Problem,
            hparams: Mapping[str, Any] | None = None, settings: Settings | None = None, *,
            progress: bool | str = False, log: Callable | None = None, should_stop=None,
            batch_sharding=None, on_chunk: Callable | None = None, chunk: int | None = None,
            fit: Callable | None = None) -> UnlearnResult:
    """Runs ``method`` on ``problem`` from ``state`` and returns the unlearned state.

    Args:
      method: a :class:`Method` (see :data:`jaxunlearn.unlearn.METHODS`).
      key: PRNG key of the run.
      net, state: the original model (never modified: a new state is returned).
      problem: from :func:`make_problem`.
      hparams: overrides of ``method.hparams`` (scalars or arrays).
      settings: overrides ``method.settings``.
      progress, log, should_stop: passed to :func:`jaxunlearn.train.fit`.
      on_chunk: ``(state, phase_index, step, aux) -> None`` after every ``chunk`` steps (learning
        curves); ``aux["cmf"]`` holds the CMF head of the current epoch in ``cmf`` mode.
      fit: the loop that runs a phase (default :func:`jaxunlearn.train.fit`); the sweep passes a
        traceable one so whole runs can be vmapped (:mod:`jaxunlearn.unlearn.sweep`).

    Returns:
      :class:`UnlearnResult` with the new state (fresh optimiser state, step counts per phase),
      per-epoch history and wall time.
    """
    settings = settings or method.settings
    if settings.mode not in MODES:
        raise ValueError(f"unknown mode {settings.mode!r}; choose one of {', '.join(MODES)}")
    if settings.mode != "full" and not method.classifier_loss:
        raise ValueError(f"{method.name} has no classifier loss, so mode {settings.mode!r} does not apply")
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in {**method.hparams, **(hparams or {})}.items()}
    t0 = time.perf_counter()
    k_prep, k_run, k_init = jax.random.split(key, 3)
    state = TrainState(state.params, state.batch_stats, None, jnp.zeros((), jnp.int32))
    if method.apply is not None:
        new = method.apply(k_prep, net, state, problem, hp, settings)
        jax.block_until_ready(new)
        return UnlearnResult(new, [], time.perf_counter() - t0, {})

    aux: dict = {}
    if method.from_scratch:
        params, batch_stats = net.init(k_init, problem.data["images"].shape[1:])
        state = TrainState(params, batch_stats, None, state.step)
    run_net = net
    if settings.mode == "classifier_only":
        state = TrainState(zero_head(state.params), state.batch_stats, None, state.step)
        run_net = net.frozen_bn()
        aux["update_mask"] = head_mask(state.params, trainable_head=True)
    before_epoch = None
    if settings.mode == "cmf":
        aux["update_mask"] = head_mask(state.params, trainable_head=False)
        before_epoch = make_cmf_refresh(net, problem.data, problem.num_classes,
                                        settings.option("cmf_temperature", 1.0))
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
    streams_all = (method.streams or default_streams)(problem, settings)
    history = []
    for i, phase in enumerate(method.phases(settings)):
        streams = {n: streams_all[n] for n in phase.batch_sizes}
        for n, idx in streams.items():
            if idx.shape[0] == 0:
                raise ValueError(f"{method.name}: stream {n!r} is empty")
        spe = train.steps_per_epoch(int(streams[phase.primary].shape[0]), phase.batch_sizes[phase.primary])
        cfg = train.OptimConfig(phase.optimizer or settings.optimizer, settings.momentum, True,
                                settings.weight_decay, settings.schedule, 0, spe * phase.epochs)
        loss = with_cmf(phase.loss) if settings.mode == "cmf" else phase.loss
        step = train.make_step(run_net, loss, cfg, bn_train=settings.mode != "classifier_only")
        run_steps = train.make_run_steps(step, phase.batch_sizes, phase.primary, batch_sharding)
        state = train.fresh_optimizer(state, cfg) if (i == 0 or phase.optimizer) else \
            TrainState(state.params, state.batch_stats, state.opt_state, jnp.zeros((), jnp.int32))
        result = (fit or train.fit)(run_steps, state, jax.random.fold_in(k_run, i), problem.data, streams, hp, aux,
                           epochs=phase.epochs, steps_per_epoch=spe, before_epoch=before_epoch,
                           progress=f"{progress} {phase.name}" if isinstance(progress, str) else progress,
                           should_stop=should_stop, chunk=chunk,
                           on_chunk=(lambda st, n, i=i: on_chunk(st, i, n, aux)) if on_chunk else None,
                           log=(lambda r, n=phase.name: log({"phase": n, **r})) if log else None)
        history += [{"phase": phase.name, **r} for r in result.history]
        state = result.state
        if result.interrupted:
            break
    if method.finish is not None:
        state = method.finish(state, aux)
    if settings.mode == "cmf":
        aux = before_epoch(state, -1, aux)  # W from the final encoder (what evaluation uses)
    jax.block_until_ready(state.params)
    return UnlearnResult(state, history, time.perf_counter() - t0, aux)


# ----------------------------------------------------------------------------- passes outside the loop

def padded_batches(idx: jax.Array, batch_size: int):
    """Yields ``(rows [batch_size], weights [batch_size])`` covering ``idx`` once, in order.

    The last batch is padded with row 0 at weight 0, so a jitted function of a batch compiles
    once. For passes over a stream outside the training loop (saliency, Fisher importances,
    activation statistics, adversarial labels).
    """
    n = int(idx.shape[0])
    for start in range(0, n, batch_size):
        sel = idx[start:start + batch_size]
        w = jnp.ones(sel.shape[0], jnp.float32)
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

    ``pool="retain"``: uniform over retain classes (the paper); ``"all"``: uniform over all
    classes except the sample's own (SalUn's code).
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
