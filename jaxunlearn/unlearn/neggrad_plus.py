"""NegGrad+: per retain batch, descend CE on it and ascend CE on a forget batch.

The forget gradient is clipped to norm ``clip`` (1) before it is subtracted, and scaled by
``forget_weight`` (1; the CMF variant uses 0.5). One optimiser step per retain batch.
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
        logits, _, _ = net.forward(p, batch_stats, f["images"], True)
        return train.cross_entropy(logits, f["labels"])

    # Clipping the forget gradient to norm c is the same as scaling its loss by
    # min(1, c / ||g_f||), with the scale held constant (stop_gradient).
    f_ce, g_f = jax.value_and_grad(forget_ce)(params)
    scale = jax.lax.stop_gradient(jnp.minimum(1.0, hparams["clip"] / (optax.global_norm(g_f) + 1e-12)))
    logits_r, _, bs = net.forward(params, batch_stats, r["images"], True)
    r_ce = train.cross_entropy(logits_r, r["labels"])
    loss = r_ce - hparams["forget_weight"] * scale * forget_ce(params)
    return loss, (bs, {"loss": loss, "retain_ce": r_ce, "forget_ce": f_ce})


METHOD = Method(
    name="neggrad_plus",
    summary="descend on retain, ascend (clipped) on forget",
    hparams={"lr": 0.01, "forget_weight": 1.0, "clip": 1.0},
    options=(opt.LR(), opt.HParam("forget_weight", "scale of the forget-set ascent", 0.0),
             opt.HParam("clip", "norm the forget gradient is clipped to", 0.0, low_open=True), *opt.TRAINING),
    settings=Settings(epochs=2),
    phases=lambda s: [Phase("neggrad_plus", neggrad_plus_loss, {"retain": s.batch_size, "forget": s.batch_size},
                            "retain", s.epochs)],
)
