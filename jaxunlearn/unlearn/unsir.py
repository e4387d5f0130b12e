"""UNSIR (Tarun et al., "Fast Yet Effective Machine Unlearning", 2023): error-maximising noise,
then *impair* and *repair*, as Gao et al.'s code runs it (``unlearn/tarun.py``).

1. Noise (in ``prepare``): for each forget class ``c``, ``noise_size`` (128) inputs in
   *normalised* input space start from N(0, 1) and take ``noise_steps`` (40) Adam steps (lr
   ``noise_lr`` = 0.1) on :func:`noise_objective`,
   ``-CE(f(noise), c) + noise_reg * mean_i sum_j noise_ij^2`` (the regulariser is the batch
   mean of each sample's *sum* of squares, weight 0.1), at the original weights (inference
   mode): inputs the model finds least like class ``c``.
2. Impair: ``epochs`` epochs of CE over the *impair set*: the retain subset plus every noise
   sample ``noise_copies`` (20) times, shuffled together, in batches of ``batch_size``; Adam
   at ``impair_lr``.
3. Repair: ``epochs`` epochs of CE on the retain subset; a fresh Adam at ``lr``.

The retain subset is at most ``per_class`` (1000) samples of each retain class (the first in
training-split order, as the authors' sorted ``intersect1d`` picks them). The impair set is a
stream of the retain-subset rows and ``noise_copies * F * noise_size`` placeholder rows (the
forget-set rows, repeated); the impair loss replaces every placeholder by a noise sample drawn
uniformly with the step key and gives it the noise's class. So each batch mixes retain and
noise samples in the authors' proportion; each noise sample is seen ``noise_copies`` times per
epoch on average (the authors: exactly).

The impair phase runs at ``impair_lr`` (its ``Phase.lr``), the repair phase at ``lr``
(``docs/parity.md``, item 2).

Class forgetting: the noise targets the classes of the forget samples. In ``classifier_only``
mode the noise is learned through the zeroed head, so it gets no signal (it only shrinks).

Defaults (digits-sized): lr = impair_lr = 2e-3, 1 impair + 1 repair epoch. The paper's
CIFAR-10 setting (3 + 3 epochs, impair lr 1e-4, repair lr 5e-5) is
:data:`jaxunlearn.unlearn.configs.CIFAR10`.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import train
from jaxunlearn.data import normalize
from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings, forget_classes, retain_ce


def noise_objective(logits, labels, x, noise_reg):
    """The noise's loss: ``-CE(logits, labels) + noise_reg * mean_i sum_j x_ij^2``.

    Args:
      logits: ``[M, K]`` logits of the noise.
      labels: ``[M]`` int classes the noise is made for.
      x: ``[M, ...]`` the noise (normalised input space).
      noise_reg: weight of the regulariser (the authors: 0.1).

    Returns:
      Scalar float32.
    """
    per_sample = jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1)
    return -train.cross_entropy(logits, labels) + noise_reg * jnp.mean(per_sample)


def learn_noise(key, net, state, classes, image_shape, hparams, size: int, steps: int):
    """``(noise [F * size, *image_shape], labels [F * size])`` maximising CE of their class.

    The classes' noises are independent (each class's objective reads only its own rows), so
    they are optimised together: one Adam on the stacked noise is the authors' per-class Adams.
    """
    labels = jnp.repeat(jnp.asarray(classes, jnp.int32), size)
    noise = jax.random.normal(key, (labels.shape[0], *image_shape), jnp.float32)
    opt = optax.adam(hparams["noise_lr"])
    n_cls = len(classes)

    def objective(x):
        logits, _, _ = net.forward_normalized(state.params, state.batch_stats, x, False)
        # Sum over classes of each class's batch-mean objective (the authors' separate losses).
        return n_cls * noise_objective(logits, labels, x, hparams["noise_reg"])

    @jax.jit
    def step(x, opt_state):
        updates, opt_state = opt.update(jax.grad(objective)(x), opt_state)
        return optax.apply_updates(x, updates), opt_state

    opt_state = opt.init(noise)
    for _ in range(steps):  # a host loop over a jitted step (scan is slow for conv nets on CPU)
        noise, opt_state = step(noise, opt_state)
    return noise, labels


def impair_loss(net, params, batch_stats, batch, key, hparams, aux):
    """CE on an impair batch whose placeholder (forget-set) rows are replaced by noise."""
    b = batch["impair"]
    is_noise = b["forget"]
    pick = jax.random.randint(key, is_noise.shape, 0, aux["noise"].shape[0])
    x = normalize(b["images"], net.mean, net.std)
    bcast = is_noise.reshape(is_noise.shape + (1,) * (x.ndim - 1))
    x = jnp.where(bcast, aux["noise"][pick], x)
    y = jnp.where(is_noise, aux["noise_labels"][pick], b["labels"])
    logits, _, bs = net.forward_normalized(params, batch_stats, x, True)
    loss = train.cross_entropy(logits, y)
    keep = (~is_noise).astype(jnp.float32)
    acc = jnp.sum((jnp.argmax(logits, -1) == y) * keep) / jnp.maximum(jnp.sum(keep), 1.0)
    return loss, (bs, {"loss": loss, "accuracy": acc})


def _valid_rows(rows, valid):
    rows = np.asarray(rows)
    return rows if valid is None else rows[np.asarray(valid)]


def retain_subset(problem, per_class: int) -> np.ndarray:
    """The first ``per_class`` retain samples of each class, in training-split order."""
    retain = _valid_rows(problem.retain, getattr(problem, "retain_valid", None))
    labels = np.asarray(problem.data["labels"])[retain]
    keep = np.zeros(len(retain), bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[:per_class]] = True
    return retain[keep]


def impair_rows(problem, s) -> np.ndarray:
    """The impair set: retain-subset rows, then ``noise_copies * F * noise_size`` forget-set
    rows (placeholders the impair loss replaces by noise)."""
    forget = _valid_rows(problem.forget, getattr(problem, "forget_valid", None))
    if forget.shape[0] == 0:
        raise ValueError("unsir: the forget set is empty")
    n_noise = s.option("noise_copies", 20) * len(forget_classes(problem)) * s.option("noise_size", 128)
    return np.concatenate([retain_subset(problem, s.option("per_class", 1000)), np.resize(forget, n_noise)])


def streams(problem, s):
    return {"retain": jnp.asarray(retain_subset(problem, s.option("per_class", 1000)), jnp.int32),
            "impair": jnp.asarray(impair_rows(problem, s), jnp.int32)}


def phases(s):
    return [Phase("impair", impair_loss, {"impair": s.batch_size}, "impair", s.epochs, optimizer="adam",
                  lr="impair_lr"),
            Phase("repair", retain_ce, {"retain": s.batch_size}, "retain", s.epochs, optimizer="adam")]


def prepare(key, net, state, problem, hparams, settings):
    noise, labels = learn_noise(key, net, state, forget_classes(problem), problem.data["images"].shape[1:],
                                hparams, settings.option("noise_size", 128), settings.option("noise_steps", 40))
    return state, {"noise": noise, "noise_labels": labels}


METHOD = Method(
    name="unsir",
    summary="error-maximising noise: impair on noise + retain subset, then repair",
    hparams={"lr": 2e-3, "impair_lr": 2e-3, "noise_lr": 0.1, "noise_reg": 0.1},
    options=(opt.LR("learning rate of the repair phase (Adam)"),
             opt.HParam("impair_lr", "learning rate of the impair phase (Adam)", 0.0, low_open=True),
             opt.HParam("noise_lr", "Adam learning rate of the noise", 0.0, low_open=True),
             opt.HParam("noise_reg", "weight of the batch mean of each noise sample's sum of squares", 0.0),
             opt.Int("epochs", None, "impair epochs, and as many repair epochs", 1),
             opt.BATCH_SIZE, opt.WEIGHT_DECAY, opt.SCHEDULE, opt.CMF_TEMPERATURE,
             opt.Int("noise_copies", 20, "times each noise sample enters the impair set", 1),
             opt.Int("noise_size", 128, "noise samples learned per forget class", 1),
             opt.Int("noise_steps", 40, "Adam steps of the noise", 0),
             opt.Int("per_class", 1000, "retain samples per class in the retain subset", 1)),
    settings=Settings(epochs=1, optimizer="adam", weight_decay=0.0,
                      options=(("noise_copies", 20), ("noise_size", 128), ("noise_steps", 40),
                               ("per_class", 1000))),
    phases=phases,
    prepare=prepare,
    streams=streams,
    host_side="the noise is learned in a host loop over the forget classes read on the host",
)
