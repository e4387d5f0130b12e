"""Boundary Shrink (Chen, Gao, Liu, Peng & Wu, "Boundary Unlearning", CVPR 2023).

Each forget sample is relabelled with its *nearest wrong class*: one FGSM step of size ``eps``
(in normalised input space) on the ORIGINAL model, ``x' = x + eps * sign(grad_x CE(f(x), y))``,
and the new label is the top class of ``f(x')`` other than ``y`` (the prediction if the attack
crossed the boundary, else the second-best class). The model is then fine-tuned on the forget
set with those labels (CE), which shrinks the forget class's decision region into its
neighbours.

The labels are computed once in ``prepare`` (the attack model is frozen) and stored in aux as
an ``[N]`` array over the training split, read through ``batch["forget"]["index"]``.
In ``classifier_only`` mode the attack sees the zeroed head, so the labels degenerate to the
lowest other class; use the full mode.
"""

import jax
import jax.numpy as jnp

from jaxunlearn import train
from jaxunlearn.data import normalize
from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings, padded_batches


def nearest_wrong_class(net, state, images, labels, eps):
    """FGSM step of size ``eps`` -> top class other than ``labels`` at the perturbed input."""
    x = normalize(images, net.mean, net.std)

    def ce(x):
        logits, _, _ = net.forward_normalized(state.params, state.batch_stats, x, False)
        return train.cross_entropy(logits, labels)

    x_adv = x + eps * jnp.sign(jax.grad(ce)(x))
    logits, _, _ = net.forward_normalized(state.params, state.batch_stats, x_adv, False)
    logits = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jnp.argmax(logits, -1).astype(jnp.int32)


def shrink_loss(net, params, batch_stats, batch, key, hparams, aux):
    b = batch["forget"]
    target = aux["boundary_labels"][b["index"]]
    logits, _, bs = net.forward(params, batch_stats, b["images"], True)
    loss = train.cross_entropy(logits, target)
    return loss, (bs, {"loss": loss, "forget_accuracy": train.accuracy(logits, b["labels"])})


def prepare(key, net, state, problem, hparams, settings):
    data = problem.data
    attack = jax.jit(lambda images, labels: nearest_wrong_class(net, state, images, labels, hparams["eps"]))
    labels = data["labels"]
    for sel, w in padded_batches(problem.forget, 256):
        n = int(w.sum())  # the padding rows are dropped
        labels = labels.at[sel[:n]].set(attack(data["images"][sel], data["labels"][sel])[:n])
    return state, {"boundary_labels": labels}


METHOD = Method(
    name="boundary_shrink",
    summary="fine-tune forget samples towards their nearest wrong class (FGSM)",
    hparams={"lr": 0.01, "eps": 0.5},
    options=(opt.LR(), opt.HParam("eps", "FGSM step size in normalised input space", 0.0), *opt.TRAINING),
    settings=Settings(epochs=2, batch_size=64),
    phases=lambda s: [Phase("shrink", shrink_loss, {"forget": s.batch_size}, "forget", s.epochs)],
    prepare=prepare,
)
