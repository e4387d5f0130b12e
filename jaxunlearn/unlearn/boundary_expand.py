"""Boundary Expand (Chen, Gao, Liu, Peng & Wu, "Boundary Unlearning", CVPR 2023).

A *shadow* output neuron is added to the classifier (``params["shadow"]``: ``kernel [D, 1]``,
``bias [1]``, reading the penultimate features), the model is fine-tuned with CE on the
``K + 1`` logits sending every forget sample to the shadow class, and the shadow neuron is then
removed (``finish``): the forget samples' region now belongs to a class that no longer exists,
so they fall to their neighbours.

Flax ignores parameter entries its module does not declare, so the network runs unchanged
with the extra entry; the shadow logit is computed in the loss from ``feats["features"]``.
The shadow neuron is initialised like a fresh ``Dense`` row (LeCun normal, zero bias).
"""

import jax
import jax.numpy as jnp

from jaxunlearn import train
from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings

SHADOW = "shadow"


def expand_loss(net, params, batch_stats, batch, key, hparams, aux):
    b = batch["forget"]
    logits, feats, bs = net.forward(params, batch_stats, b["images"], True)
    shadow = feats["features"] @ params[SHADOW]["kernel"] + params[SHADOW]["bias"]
    k = logits.shape[-1]
    loss = train.cross_entropy(jnp.concatenate([logits, shadow], -1), jnp.full_like(b["labels"], k))
    return loss, (bs, {"loss": loss, "forget_accuracy": train.accuracy(logits, b["labels"])})


def prepare(key, net, state, problem, hparams, settings):
    _, feats, _ = net.forward(state.params, state.batch_stats, problem.data["images"][:1], False)
    d = feats["features"].shape[-1]
    shadow = {"kernel": jax.nn.initializers.lecun_normal()(key, (d, 1), jnp.float32),
              "bias": jnp.zeros((1,), jnp.float32)}
    return state._replace(params={**state.params, SHADOW: shadow}), {}


def finish(state, aux):
    params = {k: v for k, v in state.params.items() if k != SHADOW}
    return state._replace(params=params, opt_state=None)


METHOD = Method(
    name="boundary_expand",
    summary="fine-tune forget samples into a shadow class, then prune it",
    hparams={"lr": 0.01},
    options=(opt.LR(), *opt.TRAINING),
    settings=Settings(epochs=2, batch_size=64),
    phases=lambda s: [Phase("expand", expand_loss, {"forget": s.batch_size}, "forget", s.epochs)],
    prepare=prepare,
    finish=finish,
)
