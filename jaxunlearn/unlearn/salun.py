"""SalUn: Random Label restricted to the most salient parameters.

Saliency = ``|grad of CE on D_f|`` at the original weights, accumulated over the whole forget
set and ranked globally over all parameters; the top ``threshold`` fraction may move. The
mask applies to the final update, so weight decay and momentum never move a masked weight.
"""

import jax
import jax.numpy as jnp

from jaxunlearn import train
from jaxunlearn.unlearn import options as opt, random_label
from jaxunlearn.unlearn.core import Method, Settings, padded_batches


def saliency(net, state, problem, batch_size: int = 256):
    """``|sum over forget batches of grad CE|`` (params-shaped), at the given state."""

    @jax.jit
    def grad_of(params, images, labels, weights):
        def f(p):
            logits, _, _ = net.forward(p, state.batch_stats, images, False)
            return train.cross_entropy(logits, labels, weights) * weights.sum()
        return jax.grad(f)(params)

    total = jax.tree.map(jnp.zeros_like, state.params)
    for sel, w in padded_batches(problem.forget, batch_size, problem.stream("forget").valid):
        g = grad_of(state.params, problem.data["images"][sel], problem.data["labels"][sel], w)
        total = jax.tree.map(jnp.add, total, g)
    return jax.tree.map(jnp.abs, total)


def saliency_mask(sal, threshold: float):
    """True for the top ``threshold`` fraction of entries of ``sal`` (global ranking)."""
    flat = jnp.concatenate([x.ravel() for x in jax.tree.leaves(sal)])
    k = max(1, int(round(threshold * flat.shape[0])))
    cut = jnp.sort(flat)[flat.shape[0] - k]
    return jax.tree.map(lambda x: x >= cut, sal)


def prepare(key, net, state, problem, hparams, settings):
    mask = saliency_mask(saliency(net, state, problem), settings.option("threshold", 0.5))
    return state, {"retain_classes": problem.retain_classes, "update_mask": mask}


METHOD = Method(
    name="salun",
    summary="random labels on the most salient half of the weights",
    hparams={"lr": 0.01},
    options=(opt.LR(), *opt.TRAINING, random_label.LABEL_POOL,
             opt.Float("threshold", 0.5, "fraction of the parameters (top saliency) that may move", 0.0, 1.0,
                       low_open=True)),
    settings=Settings(epochs=1, options=(("threshold", 0.5),)),
    phases=random_label.phases,
    prepare=prepare,
)
