"""SCRUB: a student (copy of the original) moves away from the frozen teacher on D_f and
stays close to it on D_r.

Each of the first ``msteps`` epochs starts with a *max* pass over D_f maximising
``KL(teacher || student)`` at temperature ``T``; every epoch has a *min* pass over D_r
minimising ``ce_weight * CE + kl_weight * KL`` (0.99 and 0.001, as in the paper's table).
"""

import jax
import jax.numpy as jnp

from jaxunlearn import train
from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings


def kl_teacher_student(teacher_logits, student_logits, temperature):
    """Mean over the batch of ``KL(softmax(t/T) || softmax(s/T)) * T^2``."""
    t = jax.nn.log_softmax(teacher_logits / temperature)
    s = jax.nn.log_softmax(student_logits / temperature)
    return (jnp.exp(t) * (t - s)).sum(-1).mean() * temperature ** 2


def _teacher_logits(net, aux, images):
    teacher = net.frozen_bn().with_head(aux.get("teacher_cmf"))
    logits, _, _ = teacher.forward(aux["teacher"]["params"], aux["teacher"]["batch_stats"], images, False)
    return jax.lax.stop_gradient(logits)


def max_loss(net, params, batch_stats, batch, key, hparams, aux):
    b = batch["forget"]
    logits, _, bs = net.forward(params, batch_stats, b["images"], True)
    kl = kl_teacher_student(_teacher_logits(net, aux, b["images"]), logits, hparams["temperature"])
    return -kl, (bs, {"loss": -kl, "forget_kl": kl})


def min_loss(net, params, batch_stats, batch, key, hparams, aux):
    b = batch["retain"]
    logits, _, bs = net.forward(params, batch_stats, b["images"], True)
    kl = kl_teacher_student(_teacher_logits(net, aux, b["images"]), logits, hparams["temperature"])
    ce = train.cross_entropy(logits, b["labels"])
    loss = hparams["ce_weight"] * ce + hparams["kl_weight"] * kl
    return loss, (bs, {"loss": loss, "retain_ce": ce, "retain_kl": kl})


def phases(s):
    out = []
    for e in range(s.epochs):
        if e < s.option("msteps", 2):
            out.append(Phase(f"max{e + 1}", max_loss, {"forget": s.batch_size}, "forget", 1))
        out.append(Phase(f"min{e + 1}", min_loss, {"retain": s.batch_size}, "retain", 1))
    return out


def prepare(key, net, state, problem, hparams, settings):
    aux = {"teacher": {"params": state.params, "batch_stats": state.batch_stats}}
    if net.head_buffers is not None:  # CMF mode: the teacher is the original CMF model
        aux["teacher_cmf"] = net.head_buffers
    return state, aux


METHOD = Method(
    name="scrub",
    summary="teacher-student: diverge on forget, match on retain",
    hparams={"lr": 0.01, "temperature": 4.0, "ce_weight": 0.99, "kl_weight": 0.001},
    options=(opt.LR(), opt.HParam("temperature", "distillation temperature T", 0.0, low_open=True),
             opt.HParam("ce_weight", "weight of the retain cross-entropy in the min pass", 0.0),
             opt.HParam("kl_weight", "weight of the retain KL in the min pass", 0.0), *opt.TRAINING,
             opt.Int("msteps", 2, "the first msteps epochs start with a max pass over the forget set", 0)),
    settings=Settings(epochs=2, batch_size=64, options=(("msteps", 2),)),
    phases=phases,
    prepare=prepare,
)
