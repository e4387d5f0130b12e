"""SCRUB: a student (copy of the original) moves away from the frozen teacher on D_f and
stays close to it on D_r.

Each of the first ``msteps`` epochs starts with a *max* pass over D_f maximising
``KL(teacher || student)`` at temperature ``T``; every epoch has a *min* pass over D_r
minimising ``ce_weight * CE + kl_weight * KL`` (0.99 and 0.001, as in the paper's table).

As the authors run it (``unlearn/scrub.py`` of ycgao1/CMF_Unlearning, lines 396-407 and
435-440; SCRUB's repdistiller loop): one SGD optimiser (momentum 0.9, weight decay 5e-4,
**without** Nesterov) shared by the max and min passes (its momentum carries across them),
the student in training mode in both passes, the teacher in inference mode; their step decay
(x0.1 after epochs 3, 5, 9) never fires in 3 epochs. The plain heavy-ball momentum needs the
runner's ``Settings.nesterov``; until that field exists SCRUB runs with the runner's Nesterov
momentum (see ``docs/parity.md``, item 11).
"""

import dataclasses

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
    """``max1, min1, ..., max_m, min_m, min_{m+1}, ...`` (one epoch each).

    In ``cmf`` mode the authors recompute W once per epoch, after the min pass
    (``unlearn/scrub.py`` line 303), so an epoch's max and min passes share one W: the min pass
    that follows a max pass keeps the max pass's W (``refresh_cmf=False``).
    """
    out = []
    for e in range(s.epochs):
        has_max = e < s.option("msteps", 2)
        if has_max:
            out.append(Phase(f"max{e + 1}", max_loss, {"forget": s.batch_size}, "forget", 1))
        out.append(Phase(f"min{e + 1}", min_loss, {"retain": s.batch_size}, "retain", 1, refresh_cmf=not has_max))
    return out


def prepare(key, net, state, problem, hparams, settings):
    aux = {"teacher": {"params": state.params, "batch_stats": state.batch_stats}}
    if net.head_buffers is not None:  # CMF mode: the teacher is the original CMF model
        aux["teacher_cmf"] = net.head_buffers
    return state, aux


_SETTINGS = Settings(epochs=2, batch_size=64, nesterov=False, options=(("msteps", 2),))  # authors: no Nesterov

METHOD = Method(
    name="scrub",
    summary="teacher-student: diverge on forget, match on retain",
    hparams={"lr": 0.01, "temperature": 4.0, "ce_weight": 0.99, "kl_weight": 0.001},
    options=(opt.LR(), opt.HParam("temperature", "distillation temperature T", 0.0, low_open=True),
             opt.HParam("ce_weight", "weight of the retain cross-entropy in the min pass", 0.0),
             opt.HParam("kl_weight", "weight of the retain KL in the min pass", 0.0), *opt.TRAINING,
             opt.Int("msteps", 2, "the first msteps epochs start with a max pass over the forget set", 0)),
    settings=_SETTINGS,
    phases=phases,
    prepare=prepare,
)
