"""NegGrad+: per retain batch, descend CE on it and ascend CE on a forget batch.

The forget gradient is clipped to norm ``clip`` (1; 0 = not clipped) before it is subtracted,
and scaled by ``forget_weight`` (1; the CMF variant uses 0.5). One optimiser step per retain
batch.

As the authors' ``unlearn_naive`` (``unlearn/naive.py`` of ycgao1/CMF_Unlearning, lines
44-63): the forget batch runs first in training mode, so BatchNorm's running statistics are
updated by the forget batch and then by the retain batch (two momentum updates per step);
only the forget gradient is clipped (``clip_grad_norm_`` between the two backward passes).
Their CMF variant (``unlearn_naive_CMF``, lines 387-411) instead clips the *total* gradient
after both passes and not the forget gradient alone; that clipping belongs to the optimiser
step (``Settings.clip_norm``), so the paper's + CMF configs set ``clip=0`` (``docs/parity.md``,
item 5).
"""

import jax
import jax.numpy as jnp
import optax

from jaxunlearn import train
from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings


def neggrad_plus_loss(net, params, batch_stats, batch, key, hparams, aux):
    r, f = batch["retain"], batch["forget"]

    def forget_ce(p):
        logits, _, bs_f = net.forward(p, batch_stats, f["images"], True)
        return train.cross_entropy(logits, f["labels"]), bs_f

    # Clipping the forget gradient to norm c is the same as scaling its loss by
    # min(1, c / ||g_f||), with the scale held constant (stop_gradient).
    (f_ce, bs_f), g_f = jax.value_and_grad(forget_ce, has_aux=True)(params)
    clip = hparams["clip"]
    scale = jax.lax.stop_gradient(jnp.where(
        clip > 0, jnp.minimum(1.0, clip / (optax.global_norm(g_f) + 1e-12)), 1.0))
    # In training mode the outputs do not read the running statistics, so chaining them
    # through the forget pass changes only the statistics the step returns.
    logits_r, _, bs = net.forward(params, bs_f, r["images"], True)
    r_ce = train.cross_entropy(logits_r, r["labels"])
    loss = r_ce - hparams["forget_weight"] * scale * _with_gradient(f_ce, g_f, params)
    return loss, (bs, {"loss": loss, "retain_ce": r_ce, "forget_ce": f_ce})


def _with_gradient(value, grad, params):
    """A term whose value is ``value`` and whose gradient with respect to ``params`` is ``grad``.

    ``<stop_gradient(grad), params>`` has gradient ``grad``; subtracting its stopped value
    leaves ``value``. So the forget gradient already taken for the clipping scale is reused,
    instead of differentiating the forget pass a second time: one forward and backward pass
    fewer per step (one epoch on the Fashion-MNIST CNN, 10,000 images, second run in the
    process: 20.6 s before, 12.9 s after, 2 cores).
    """
    lin = optax.tree_utils.tree_vdot(jax.lax.stop_gradient(grad), params)
    return jax.lax.stop_gradient(value) + lin - jax.lax.stop_gradient(lin)


METHOD = Method(
    name="neggrad_plus",
    summary="descend on retain, ascend (clipped) on forget",
    hparams={"lr": 0.01, "forget_weight": 1.0, "clip": 1.0},
    options=(opt.LR(), opt.HParam("forget_weight", "scale of the forget-set ascent", 0.0),
             opt.HParam("clip", "norm the forget gradient is clipped to (0: not clipped)", 0.0), *opt.TRAINING),
    settings=Settings(epochs=2),
    phases=lambda s: [Phase("neggrad_plus", neggrad_plus_loss, {"retain": s.batch_size, "forget": s.batch_size},
                            "retain", s.epochs)],
)
