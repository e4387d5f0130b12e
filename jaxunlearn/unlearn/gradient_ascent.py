"""Gradient ascent (GA): maximise the cross-entropy of the forget set.

Plain GA runs away: the gradient of ``-CE`` grows as a sample's probability of its label
falls, so the step count that forgets one class wrecks the model on another (on the digits
MLP, no plain-GA setting of a small grid, lr 0.01-0.05 and 2-4 epochs, forgot classes 0, 3,
5 and 8 alike: each left some class above 80 % or collapsed retain accuracy). With
``until_wrong`` (the default) a forget sample stops contributing once the model no longer
predicts its label -- the per-sample form of "ascend until the forget accuracy is 0", the stop
rule of Kodge et al.'s GA baseline -- and the batch loss is the sum over the still-correct
samples divided by the batch size, so the step shrinks as samples drop out. Momentum is off by
default, so the updates stop (up to weight decay) once every forget sample is misclassified;
with it the run would coast on. ``until_wrong=False`` is plain GA.
"""

import jax
import optax

from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings


def make_loss(until_wrong: bool = True):
    def ascent_loss(net, params, batch_stats, batch, key, hparams, aux):
        b = batch["forget"]
        logits, _, bs = net.forward(params, batch_stats, b["images"], True)
        correct = jax.lax.stop_gradient(logits.argmax(-1) == b["labels"]).astype(logits.dtype)
        per_sample = optax.softmax_cross_entropy_with_integer_labels(logits, b["labels"])
        ce = (per_sample * correct).mean() if until_wrong else per_sample.mean()  # stopped samples add 0
        return -ce, (bs, {"loss": -ce, "forget_accuracy": correct.mean()})

    return ascent_loss


METHOD = Method(
    name="gradient_ascent",
    summary="ascend the forget-set cross-entropy",
    hparams={"lr": 0.1},
    options=(opt.LR(), *opt.TRAINING,
             opt.Bool("until_wrong", True, "a forget sample stops contributing once misclassified (false: plain GA)")),
    settings=Settings(epochs=5, batch_size=64, momentum=0.0, options=(("until_wrong", True),)),
    phases=lambda s: [Phase("ascent", make_loss(s.option("until_wrong", True)), {"forget": s.batch_size}, "forget",
                            s.epochs)],
)
