"""Gradient ascent (GA): maximise the cross-entropy of the forget set."""

from jaxunlearn import train
from jaxunlearn.unlearn.core import Method, Phase, Settings


def ascent_loss(net, params, batch_stats, batch, key, hparams, aux):
    b = batch["forget"]
    logits, _, bs = net.forward(params, batch_stats, b["images"], True)
    ce = train.cross_entropy(logits, b["labels"])
    return -ce, (bs, {"loss": -ce, "forget_accuracy": train.accuracy(logits, b["labels"])})


METHOD = Method(
    name="gradient_ascent",
    summary="ascend the forget-set cross-entropy",
    hparams={"lr": 1e-3},
    settings=Settings(epochs=1, batch_size=64),
    phases=lambda s: [Phase("ascent", ascent_loss, {"forget": s.batch_size}, "forget", s.epochs)],
)
