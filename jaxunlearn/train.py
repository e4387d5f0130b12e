"""The one generic training loop that training and every unlearning method reuse.

Layers, from inner to outer:

* :func:`make_step` builds a pure ``step(state, batch, key, hparams, aux) -> (state, metrics)``
  from a *loss function*. A loss function has the signature
  ``loss_fn(net, params, batch_stats, batch, key, hparams, aux) -> (loss, (batch_stats, metrics))``
  where ``batch`` maps stream names (``"train"``, ``"retain"``, ``"forget"``, ...) to dicts of
  batched arrays (``"images" [B, H, W, C] uint8``, ``"labels" [B] int32``, ...).
* :class:`Epoch` is the pure epoch function: which rows each step of an epoch reads
  (per-stream orders and gathers inside jit, data arriving as arguments, streams padded to a
  common length with a validity mask so unequal forget sets batch) and the step itself.
* :func:`run_epochs` runs whole epochs of an :class:`Epoch` in ``lax.scan`` (pure, no host
  callbacks): the core of every whole run, vmappable over seeds, forget sets and hparams.
* :func:`make_train` is the pure whole training run ``train(key, data, hparams) -> state``.
* Host drivers are thin layers over the same :class:`Epoch`: :func:`jit_runner` (alias
  :func:`make_run_steps`) executes steps ``[start, start + num)`` of an epoch (one jitted
  step per call on CPU, a jitted ``lax.scan`` elsewhere), and :func:`fit` adds epochs,
  chunks (checkpoints every N steps), early stopping, progress, JSON-lines logging,
  interruption and divergence handling.

Learning rate and other swept values live in ``hparams`` (a dict of arrays), so they can be
vmapped; architecture, step counts and batch sizes are static.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn.data import augment as augment_images
from jaxunlearn.state import Net, TrainState


# ----------------------------------------------------------------------------- config

@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Static optimiser and schedule settings (the base learning rate is ``hparams['lr']``).

    ``optimizer``: ``"sgd"`` (momentum, Nesterov, coupled weight decay as in PyTorch) or
    ``"adam"``. Schedule: linear warm-up over ``warmup_steps`` then cosine from ``lr`` to
    ``final_lr`` at ``total_steps`` (``"cosine"``), a constant ``lr`` (``"constant"``), or
    ``"step"``: ``lr * step_gamma ** (epoch // step_epochs)`` with ``epoch = step // (total_steps
    // epochs)`` (PyTorch's ``StepLR(step_size=step_epochs, gamma=step_gamma)`` stepped once per
    epoch; ``epochs`` is the run's epoch count, so ``total_steps // epochs`` is steps per epoch).
    ``clip_norm``: the total gradient is scaled to at most this global L2 norm first (as
    PyTorch's ``clip_grad_norm_`` before ``optimizer.step()``; the CMF authors' ``1.0``).
    """

    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    total_steps: int = 1
    final_lr: float = 1e-5
    clip_norm: float | None = None  # clip the gradient's global L2 norm before decay and momentum
    step_epochs: int = 3   # "step" schedule: epochs between two decays
    step_gamma: float = 0.2  # "step" schedule: factor of each decay
    epochs: int = 1        # "step" schedule: epochs in total_steps


def make_gradient_transform(cfg: OptimConfig) -> optax.GradientTransformation:
    """The optimiser without its learning rate: gradients -> unscaled update directions."""
    clip = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    if cfg.optimizer == "sgd":
        parts = clip + ([optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else [])
        if cfg.momentum:
            parts.append(optax.trace(decay=cfg.momentum, nesterov=cfg.nesterov))
        return optax.chain(*parts) if parts else optax.identity()
    if cfg.optimizer == "adam":
        parts = clip + ([optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else [])
        return optax.chain(*parts, optax.scale_by_adam())
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adam")


def learning_rate(cfg: OptimConfig, base_lr: jax.Array, step: jax.Array, total_steps=None) -> jax.Array:
    """Learning rate at ``step`` (scalar) for a base rate ``base_lr`` (scalar array).

    ``total_steps`` (a scalar, possibly traced) overrides ``cfg.total_steps``.
    """
    total_steps = cfg.total_steps if total_steps is None else total_steps
    if cfg.schedule == "constant":
        return base_lr
    if cfg.schedule == "step":
        epoch = step // jnp.maximum(jnp.asarray(total_steps) // max(cfg.epochs, 1), 1)
        return base_lr * jnp.float32(cfg.step_gamma) ** (epoch // max(cfg.step_epochs, 1)).astype(jnp.float32)
    if cfg.schedule != "cosine":
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose cosine, constant or step")
    step = step.astype(jnp.float32)
    warm = jnp.minimum(1.0, (step + 1) / max(cfg.warmup_steps, 1)) if cfg.warmup_steps else 1.0
    decay_steps = jnp.maximum(total_steps - cfg.warmup_steps, 1)
    progress = jnp.clip((step - cfg.warmup_steps) / decay_steps, 0.0, 1.0)
    final = jnp.minimum(cfg.final_lr, base_lr)
    cosine = final + (base_lr - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < cfg.warmup_steps, base_lr * warm, cosine)


def init_state(net: Net, key: jax.Array, image_shape, cfg: OptimConfig) -> TrainState:
    """Initial parameters, BatchNorm statistics and optimiser state (step 0) for ``key``.

    Runs as one compiled program (cached per ``(net, image_shape, cfg)``): run eagerly, Flax's
    init dispatched and compiled every initialiser op on its own, ~4 s of a short ``train``
    command on the 2-core CPU (benchmarks/README.md). Same bits as the eager init, and as the
    init traced inside :func:`make_train`.
    """
    try:
        init = _jit_init(net, tuple(image_shape), cfg)
    except TypeError:  # an unhashable net (e.g. array fields): eager
        return _init_state(net, key, tuple(image_shape), cfg)
    return init(key)


def _init_state(net, key, image_shape, cfg):
    params, batch_stats = net.init(key, image_shape)
    return fresh_optimizer(TrainState(params, batch_stats, None, jnp.zeros((), jnp.int32)), cfg)


@functools.lru_cache(maxsize=32)
def _jit_init(net, image_shape, cfg):
    return jax.jit(lambda key: _init_state(net, key, image_shape, cfg))


def fresh_optimizer(state: TrainState, cfg: OptimConfig) -> TrainState:
    """Same parameters, new optimiser state and step 0 (the start of every unlearning run)."""
    opt_state = make_gradient_transform(cfg).init(state.params)
    return TrainState(state.params, state.batch_stats, opt_state, jnp.zeros((), jnp.int32))


# ----------------------------------------------------------------------------- losses

def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Mean softmax cross-entropy; ``logits [B, K]``, integer ``labels [B]``, optional ``weights [B]``."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    if weights is None:
        return ce.mean()
    return (ce * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return (jnp.argmax(logits, -1) == labels).mean()


def supervised_loss(net, params, batch_stats, batch, key, hparams, aux, *, stream="train", train=True):
    """Cross-entropy on one stream: plain supervised training (and retain-only fine-tuning)."""
    b = batch[stream]
    logits, _, new_bs = net.forward(params, batch_stats, b["images"], train)
    loss = cross_entropy(logits, b["labels"])
    return loss, (new_bs, {"loss": loss, "accuracy": accuracy(logits, b["labels"])})


# ----------------------------------------------------------------------------- step and loop

@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """In-jit augmentation: random crop with ``pad`` pixels of padding, horizontal ``flip``."""

    pad: int = 0
    flip: bool = False

    @property
    def active(self) -> bool:
        return self.pad > 0 or self.flip


def make_step(net: Net, loss_fn: Callable, cfg: OptimConfig, *, bn_train: bool = True,
              augment: AugmentConfig = AugmentConfig()) -> Callable:
    """Builds the pure train step.

    Args:
      net: the network.
      loss_fn: ``(net, params, batch_stats, batch, key, hparams, aux) -> (loss, (batch_stats,
        metrics))``; it calls ``net.forward`` with whatever ``train`` flag it needs.
      cfg: optimiser and schedule.
      bn_train: if False, BatchNorm running statistics are never changed by this step.
      augment: augmentation applied to every stream's ``"images"`` before the loss.

    Returns:
      ``step(state, batch, key, hparams, aux) -> (state, metrics)``. ``hparams["lr"]`` is the
      base learning rate; ``hparams["total_steps"]`` (optional, may be traced) overrides
      ``cfg.total_steps``; the loss also sees ``hparams["progress"]`` = step / total_steps. If
      ``aux`` holds ``"update_mask"`` (a params-shaped pytree of
      bools), parameters where it is False keep their exact bits: the mask applies to the final
      update, after weight decay and momentum. The loss receives ``net.with_rng(k)`` with a
      per-step key ``k``, so modules with dropout get their ``"dropout"`` rng.
    """
    transform = make_gradient_transform(cfg)

    def step(state: TrainState, batch, key, hparams, aux):
        k_aug, k_loss = jax.random.split(key)
        if augment.active:
            batch = {name: {**b, "images": augment_images(jax.random.fold_in(k_aug, i), b["images"],
                                                          augment.pad, augment.flip)}
                     for i, (name, b) in enumerate(sorted(batch.items()))}

        total = hparams.get("total_steps", cfg.total_steps)
        hp = {**hparams, "progress": state.step.astype(jnp.float32) / jnp.maximum(total, 1)}

        # a module with nn.Dropout reads its "dropout" rng from the net (a key apart from the loss's)
        step_net = net.with_rng(jax.random.fold_in(key, 0x0D0))

        def objective(params):  # (a net with a frozen encoder: only the head is differentiated)
            return loss_fn(step_net, net.head_only_gradient(params), state.batch_stats, batch, k_loss, hp, aux)

        (loss, (new_bs, metrics)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        directions, opt_state = transform.update(grads, state.opt_state, state.params)
        lr = learning_rate(cfg, jnp.asarray(hparams["lr"], jnp.float32), state.step, total)
        new_params = jax.tree.map(lambda p, d: p - (lr * d).astype(p.dtype), state.params, directions)
        mask = aux.get("update_mask") if isinstance(aux, Mapping) else None
        if mask is not None:
            new_params = jax.tree.map(lambda m, new, old: jnp.where(m, new, old), mask, new_params,
                                      state.params)
        if not bn_train:
            new_bs = state.batch_stats
        metrics = {**metrics, "lr": lr, "grad_norm": optax.global_norm(grads)}
        return TrainState(new_params, new_bs, opt_state, state.step + 1), metrics

    return step


def steps_per_epoch(num_primary: int, batch_size: int) -> int:
    """Full batches per epoch over the primary stream (the last partial batch is dropped)."""
    return max(1, num_primary // batch_size)


def default_loop() -> str:
    """``"host"`` on CPU, ``"scan"`` on GPU/TPU.

    Measured on this project's 2-core CPU (JAX 0.12): a conv-net train step inside
    ``lax.scan``/``fori_loop`` ran ~15x slower than the same step jitted alone (38 vs ~600
    img/s for the small CNN), while a fully unrolled scan was as fast as the lone step.
    On CPU we therefore loop over steps on the host, one jitted step per call.
    """
    return "host" if jax.default_backend() == "cpu" else "scan"


class Stream(NamedTuple):
    """Rows of one data stream, padded to a fixed length so streams of unequal sizes batch.

    Attributes:
      index: int32 ``[L]`` rows into the data arrays.
      valid: bool ``[L]``; padded entries (False) are never drawn into a batch.
    """

    index: jax.Array
    valid: jax.Array

    @property
    def count(self) -> jax.Array:
        """Number of valid rows (int32 scalar, traced under vmap)."""
        return self.valid.sum().astype(jnp.int32)


def as_stream(rows) -> Stream:
    """A :class:`Stream` from an index array (every row valid) or a stream (unchanged)."""
    if isinstance(rows, Stream):
        return rows
    rows = jnp.asarray(rows, jnp.int32)
    return Stream(rows, jnp.ones(rows.shape, bool))


def pad_stream(rows, length: int) -> Stream:
    """``rows`` (int32 ``[n]``, ``n <= length``) padded with row 0 marked invalid to ``[length]``."""
    rows = np.asarray(rows, np.int32)
    if rows.shape[0] > length:
        raise ValueError(f"cannot pad {rows.shape[0]} rows to {length}")
    pad = length - rows.shape[0]
    return Stream(jnp.asarray(np.pad(rows, (0, pad))), jnp.asarray(np.arange(length) < rows.shape[0]))


@dataclasses.dataclass(frozen=True)
class Epoch:
    """The pure epoch function of one training loop: which rows each step reads, and the step.

    Each stream is ordered per epoch by random scores over the *data rows*
    (``uniform(fold_in(fold_in(key, epoch), stream_number), [N])``), valid rows first; step
    ``t`` of the epoch draws positions ``t * B .. t * B + B - 1`` (mod the stream's valid
    count). Because the order depends on row scores rather than on the stream's length, a
    stream padded to a common length draws exactly the batches of the unpadded stream, so
    forget sets of unequal sizes can be stacked and vmapped. The step key is
    ``fold_in(fold_in(key, 1_000_003), global_step)``, so a run split into chunks equals the
    unsplit run.

    Attributes:
      step: from :func:`make_step`.
      batch_sizes: batch size of each stream, e.g. ``{"retain": 128, "forget": 128}``.
      primary: the stream whose valid count defines the epoch (``count // B`` steps).
      batch_sharding: optional ``NamedSharding`` of batched arrays (data parallelism).
      masked: steps past the primary stream's own epoch length leave the state unchanged
        (set for stacked runs whose streams are padded; unpadded runs need no mask).
    """

    step: Callable
    batch_sizes: Mapping[str, int]
    primary: str
    batch_sharding: Any = None
    masked: bool = False

    @property
    def names(self) -> list:
        return sorted(self.batch_sizes)

    def max_steps(self, streams) -> int:
        """Static steps per epoch from the primary stream's (padded) length."""
        return steps_per_epoch(int(as_stream(streams[self.primary]).index.shape[0]),
                               self.batch_sizes[self.primary])

    def num_steps(self, streams) -> jax.Array:
        """Steps per epoch of these streams (int32 scalar; traced for padded streams)."""
        return self._steps(as_stream(streams[self.primary]).count)

    def _steps(self, count) -> jax.Array:
        return jnp.maximum(1, count // self.batch_sizes[self.primary])

    def order(self, key, data, streams, epoch):
        """``{name: (rows [L] in this epoch's order, valid count)}`` for every stream."""
        ek = jax.random.fold_in(key, epoch)
        num_rows = next(iter(data.values())).shape[0]
        out = {}
        for j, n in enumerate(self.names):
            s = as_stream(streams[n])
            score = jax.random.uniform(jax.random.fold_in(ek, j), (num_rows,))[s.index]
            rows = s.index[jnp.argsort(jnp.where(s.valid, score, 2.0))]
            out[n] = (rows, jnp.maximum(s.count, 1))
        return out

    def step_at(self, state, key, data, order, hparams, aux, t):
        """Step ``t`` of the epoch whose stream order is ``order``; ``(state, metrics)``."""
        batch = {}
        for n in self.names:
            rows, count = order[n]
            bs = self.batch_sizes[n]
            pos = (t * bs + jnp.arange(bs)) % count
            b = {k: v[rows[pos]] for k, v in data.items()}
            if self.batch_sharding is not None:
                b = jax.lax.with_sharding_constraint(b, self.batch_sharding)
            batch[n] = b
        step_key = jax.random.fold_in(jax.random.fold_in(key, 1_000_003), state.step)
        new_state, metrics = self.step(state, batch, step_key, hparams, aux)
        if self.masked:
            active = t < self._steps(order[self.primary][1])
            new_state = jax.tree.map(lambda a, b: jnp.where(active, a, b), new_state, state)
        return new_state, metrics

    def run(self, state, key, data, streams, hparams, aux, epoch, start, num: int):
        """Steps ``start .. start + num - 1`` of epoch ``epoch`` in one ``lax.scan`` (pure)."""
        order = self.order(key, data, streams, epoch)
        return jax.lax.scan(lambda s, t: self.step_at(s, key, data, order, hparams, aux, t), state,
                            start + jnp.arange(num))


def run_epochs(epoch_fn: Epoch, state: TrainState, key, data, streams, hparams, aux, epochs: int,
               before_epoch: Callable | None = None) -> tuple[TrainState, Any]:
    """``epochs`` whole epochs, pure: ``lax.scan`` over epochs of ``lax.scan`` over steps.

    ``before_epoch(state, epoch, aux) -> aux`` (traceable) runs at the start of each epoch.
    Returns ``(state, aux)``. This is the traced counterpart of :func:`fit`.
    """
    num = epoch_fn.max_steps(streams)

    def body(carry, e):
        state, aux = carry
        if before_epoch is not None:
            aux = before_epoch(state, e, aux)
        state, _ = epoch_fn.run(state, key, data, streams, hparams, aux, e, 0, num)
        return (state, aux), None

    if before_epoch is not None:  # the carry needs aux's final structure: zeros of what the hook adds
        shape = jax.eval_shape(before_epoch, state, 0, aux)
        aux = {**jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shape), **aux}
    (state, aux), _ = jax.lax.scan(body, (state, aux), jnp.arange(epochs))
    return state, aux


def jit_runner(epoch_fn: Epoch, loop: str | None = None) -> Callable:
    """The host driver's runner ``run_steps(state, key, data, streams, hparams, aux, epoch, start, num)``.

    ``loop="scan"``: one jitted ``lax.scan`` per call (:meth:`Epoch.run`); ``"host"``: a Python
    loop over one jitted :meth:`Epoch.step_at`; None: :func:`default_loop`. Both give the
    same numbers. Returns ``(state, metrics stacked [num])``.
    """
    loop = loop or default_loop()
    if loop not in ("scan", "host"):
        raise ValueError(f"unknown loop {loop!r}; choose scan or host")
    if loop == "scan":
        return jax.jit(epoch_fn.run, static_argnames=("num",))
    jit_order = jax.jit(epoch_fn.order)
    jit_step = jax.jit(epoch_fn.step_at)
    # Several CPU devices: a step's cross-device all-reduce can deadlock when steps are queued
    # without being awaited (DESIGN.md), so wait for each step there.
    sharding = epoch_fn.batch_sharding
    block_each = sharding is not None and sharding.mesh.size > 1 and jax.default_backend() == "cpu"

    def run_host(state, key, data, streams, hparams, aux, epoch, start, num: int):
        order = jit_order(key, data, streams, epoch)
        metrics = []
        for t in range(start, start + num):
            state, m = jit_step(state, key, data, order, hparams, aux, t)
            if block_each:
                jax.block_until_ready(state)
            metrics.append(m)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *metrics)

    return run_host


def make_run_steps(step: Callable, batch_sizes: Mapping[str, int], primary: str,
                   batch_sharding=None, loop: str | None = None) -> Callable:
    """``jit_runner(Epoch(step, batch_sizes, primary, batch_sharding), loop)`` (see :class:`Epoch`).

    ``streams`` passed to the runner map stream names to int32 index arrays into ``data``
    (or :class:`Stream` objects); ``data`` maps array names to arrays ``[N, ...]``.
    """
    return jit_runner(Epoch(step, dict(batch_sizes), primary, batch_sharding), loop)


# ----------------------------------------------------------------------------- host loop

class Diverged(RuntimeError):
    """Raised by :func:`fit` when the loss or the parameters become non-finite."""

    def __init__(self, step: int, message: str):
        super().__init__(message)
        self.step = step


@dataclasses.dataclass
class FitResult:
    state: TrainState
    history: list  # one dict of host floats per epoch
    best_epoch: int | None = None
    interrupted: bool = False


def fit(run_steps: Callable, state: TrainState, key: jax.Array, data, streams, hparams, aux, *,
        epochs: int, steps_per_epoch: int, chunk: int | None = None,
        evaluate: Callable[[TrainState], dict] | None = None, early_stopping_metric: str | None = None,
        patience: int | None = None, on_chunk: Callable[[TrainState, int], None] | None = None,
        log: Callable[[dict], None] | None = None, progress: bool | str = False,
        should_stop: Callable[[], bool] | None = None,
        best: tuple | None = None, on_best: Callable | None = None,
        before_epoch: Callable[[TrainState, int, Any], Any] | None = None) -> FitResult:
    """Runs ``epochs`` epochs from ``state.step`` (so a restored state resumes where it stopped).

    Args:
      run_steps: from :func:`make_run_steps`.
      state, key, data, streams, hparams, aux: passed to ``run_steps``.
      epochs: total epochs of the run (including those already done by a restored state).
      steps_per_epoch: steps in one epoch.
      chunk: run at most this many steps per call (checkpoints every ``chunk`` steps).
      evaluate: ``state -> dict of floats`` at each epoch end (e.g. validation accuracy).
      early_stopping_metric: key of ``evaluate``'s dict to maximise; the best state is returned.
      patience: epochs without improvement before stopping (None: never stop early).
      on_chunk: called with ``(state, global_step)`` after every chunk (checkpointing).
      log: receives one dict per epoch (JSON-lines metrics).
      progress: show a tqdm bar (a string is used as its description) with the loss and, after
        each epoch, ``evaluate``'s figures (e.g. ``val_accuracy``).
      should_stop: polled after each chunk; True ends the run cleanly (``interrupted=True``).
      best: ``(score, state, epoch, epochs_since_best)`` carried over from before a resume.
      before_epoch: ``(state, epoch, aux) -> aux`` at the start of every epoch (e.g. recompute
        and freeze a CMF head); also on resuming mid-epoch.
      on_best: called with ``(score, state, epoch, epochs_since_best)`` at each epoch end while
        early stopping (to persist the best state for resuming).

    Raises:
      Diverged: non-finite loss or parameters; ``on_chunk`` has not seen the bad state.
    """
    chunk = chunk or steps_per_epoch
    total = epochs * steps_per_epoch
    done = int(state.step)
    best, best_state, best_epoch, since_best = best if best is not None else (-math.inf, None, None, 0)
    history = []
    bar, postfix = None, {}  # the bar shows the last chunk's loss and the epoch's validation figures
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=done, desc=progress if isinstance(progress, str) else "train",
                   unit="step", leave=False, dynamic_ncols=True)
    try:
        while done < total:
            epoch, offset = divmod(done, steps_per_epoch)
            t0 = time.perf_counter()
            if before_epoch is not None:
                aux = before_epoch(state, epoch, aux)
            epoch_metrics = []
            while offset < steps_per_epoch:
                num = min(chunk, steps_per_epoch - offset)
                new_state, metrics = run_steps(state, key, data, streams, hparams, aux, epoch, offset, num)
                losses = np.asarray(metrics["loss"])
                if not np.all(np.isfinite(losses)) or not _all_finite(new_state.params):
                    bad = done + int(np.argmax(~np.isfinite(losses))) if not np.all(np.isfinite(losses)) else done + num
                    raise Diverged(bad, f"diverged: non-finite loss or parameters at step {bad} "
                                        f"(epoch {epoch + 1}); the last finite state is kept")
                state = new_state
                epoch_metrics.append(jax.tree.map(lambda m: np.asarray(m).mean(), metrics))
                offset += num
                done += num
                if bar is not None:
                    bar.update(num)
                    postfix["loss"] = f"{float(losses.mean()):.4f}"
                    bar.set_postfix(postfix)
                if on_chunk is not None:
                    on_chunk(state, done)
                # mid-epoch stops return here; at an epoch's end the epoch is finished first
                # (validation, early stopping), so a resumed run sees the same history
                if offset < steps_per_epoch and should_stop is not None and should_stop():
                    return FitResult(state, history, best_epoch, interrupted=True)
            record = {"epoch": epoch + 1, "step": done, "time_s": time.perf_counter() - t0}
            record.update({k: float(np.mean([m[k] for m in epoch_metrics])) for k in epoch_metrics[0]})
            if evaluate is not None:
                scores = evaluate(state)
                record.update(scores)
                if bar is not None and scores:
                    postfix.update({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in scores.items()})
                    bar.set_postfix(postfix)
            history.append(record)
            if log is not None:
                log(record)
            if early_stopping_metric is not None:
                score = record[early_stopping_metric]
                if score > best:
                    best, best_state, best_epoch, since_best = score, state, epoch + 1, 0
                else:
                    since_best += 1
                if on_best is not None:
                    on_best(best, best_state, best_epoch, since_best)
                if patience is not None and since_best >= patience:
                    break
            if should_stop is not None and should_stop() and done < total:
                return FitResult(state, history, best_epoch, interrupted=True)
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        state = best_state
    return FitResult(state, history, best_epoch)


@jax.jit
def _finite(leaves):
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))


def _all_finite(tree) -> bool:
    """True iff every floating leaf of ``tree`` is finite (one jitted reduction, compiled once)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return bool(_finite(leaves)) if leaves else True


# ----------------------------------------------------------------------------- inference

def default_predict_batch(loop: str | None = None) -> int:
    """Images per inference batch: 256 in the host loop (CPU), 1000 in ``lax.map`` (GPU/TPU,
    and every traced run).

    Measured on this project's 2-core CPU (JAX 0.12, the Fashion-MNIST CNN, 10,000 images,
    median of 4 after compilation): 1.68 / 1.63 / 1.71 / 2.20 s at batch 128 / 256 / 512 /
    1000. Smaller batches keep a conv layer's activations in cache; accelerators want large ones.
    """
    return 256 if (loop or default_loop()) == "host" else 1000


def make_predict(net: Net, batch_size: int | None = None, loop: str | None = None) -> Callable:
    """``predict(params, batch_stats, images [N, H, W, C]) -> (logits [N, K], features)``.

    Inference mode (running BatchNorm statistics), in batches of ``batch_size`` (default
    :func:`default_predict_batch`; the ragged tail is padded and cut off). ``loop`` as in
    :func:`make_run_steps`: on CPU a host loop over a jitted batch (``lax.map`` is a while
    loop, slow there), elsewhere ``lax.map``. Cached per ``(net, batch_size, loop)`` so
    repeated evaluations do not recompile.
    """
    loop = loop or default_loop()
    return _make_predict(net, int(batch_size or default_predict_batch(loop)), loop)


@functools.lru_cache(maxsize=64)
def _make_predict(net: Net, batch_size: int, loop: str) -> Callable:

    def one(params, batch_stats, xb):
        logits, feats, _ = net.forward(params, batch_stats, xb, train=False)
        return logits, feats

    jit_one = jax.jit(one)

    def batches(images):
        n = images.shape[0]
        bs = min(batch_size, n)
        n_batches = -(-n // bs)
        pad = n_batches * bs - n
        if pad:
            images = jnp.concatenate([jnp.asarray(images), jnp.zeros((pad, *images.shape[1:]), images.dtype)])
        return n, bs, n_batches, images

    @jax.jit
    def predict_scan(params, batch_stats, images):
        n, bs, n_batches, x = batches(images)
        logits, feats = jax.lax.map(lambda xb: one(params, batch_stats, xb),
                                    x.reshape(n_batches, bs, *images.shape[1:]))
        unbatch = lambda a: a.reshape(n_batches * bs, *a.shape[2:])[:n]
        return unbatch(logits), jax.tree.map(unbatch, feats)

    def predict_host(params, batch_stats, images):
        n, bs, n_batches, x = batches(images)
        outs = [jit_one(params, batch_stats, x[i * bs:(i + 1) * bs]) for i in range(n_batches)]
        logits, feats = jax.tree.map(lambda *xs: jnp.concatenate(xs)[:n], *outs)
        return logits, feats

    return predict_host if loop == "host" else predict_scan


# ----------------------------------------------------------------------------- pure whole run

def make_train(net: Net, image_shape, cfg: OptimConfig, *, epochs: int, batch_size: int,
               num_train: int | None = None, loss_fn: Callable = supervised_loss,
               augment: AugmentConfig = AugmentConfig(), bn_train: bool = True,
               patience: int | None = None, eval_batch_size: int = 1000) -> Callable:
    """Returns a pure ``train(key, data, hparams) -> TrainState``: init and ``epochs`` epochs.

    No host callbacks, so the function is traceable end to end and
    ``jax.vmap(train, in_axes=(0, None, None))(keys, data, hparams)`` trains one model per key.

    ``data`` holds ``"images"`` and ``"labels"`` ``[N, ...]``; optionally ``"train_rows"``, the
    rows to train on: an int32 index array ``[L]`` (every entry a row), or a :class:`Stream`
    (e.g. a retain set padded to a common length, so retrainings on forget sets of unequal
    sizes vmap; steps past a padded stream's own epoch length are masked, which costs time, so
    pass a plain array when nothing is padded). Default: every row, or the first
    ``num_train``. With ``"val_images"`` / ``"val_labels"`` the run keeps the state of the
    best validation accuracy (evaluated after every epoch, first best on ties) and, with
    ``patience``, stops updating after that many epochs without improvement: what the host
    driver (:func:`fit` with ``early_stopping_metric``) does. The same key and rows give the
    same model as :func:`jaxunlearn.runs.train_model`.
    """
    step = make_step(net, loss_fn, cfg, bn_train=bn_train, augment=augment)
    predict = make_predict(net, eval_batch_size, loop="scan")

    def train(key, data, hparams):
        data = dict(data)
        rows = data.pop("train_rows", None)
        # only a padded Stream needs its steps masked (a plain index array has no padding);
        # the mask cost ~25 % of a vmapped digits-MLP run (docs/forgetting_quality_scale.md)
        epoch_fn = Epoch(step, {"train": batch_size}, "train", masked=isinstance(rows, Stream))
        val_x, val_y = data.pop("val_images", None), data.pop("val_labels", None)
        if rows is None:
            n = num_train if num_train is not None else data["labels"].shape[0]
            rows = jnp.arange(n, dtype=jnp.int32)
        k_init, k_data = jax.random.split(key)
        state = init_state(net, k_init, image_shape, cfg)
        streams = {"train": rows}
        spe = epoch_fn.max_steps(streams)
        if val_x is None or val_y.shape[0] == 0:
            state, _ = run_epochs(epoch_fn, state, k_data, data, streams, hparams, {}, epochs)
            return state

        def body(carry, e):
            state, best, best_state, since = carry
            stopped = since >= (patience if patience is not None else epochs + 1)
            new, _ = epoch_fn.run(state, k_data, data, streams, hparams, {}, e, 0, spe)
            state = jax.tree.map(lambda a, b: jnp.where(stopped, b, a), new, state)
            logits, _ = predict(state.params, state.batch_stats, val_x)
            acc = jnp.mean(jnp.argmax(logits, -1) == val_y)
            better = (acc > best) & ~stopped
            best_state = jax.tree.map(lambda a, b: jnp.where(better, a, b), state, best_state)
            since = jnp.where(better, 0, jnp.where(stopped, since, since + 1))
            return (state, jnp.where(better, acc, best), best_state, since), None

        carry = (state, jnp.float32(-jnp.inf), state, jnp.int32(0))
        (_, _, best_state, _), _ = jax.lax.scan(body, carry, jnp.arange(epochs))
        return best_state

    return train
