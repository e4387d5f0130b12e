"""Random Label (RL): train on D_f and D_r together; forget samples get random labels.

Labels of forget samples are redrawn every batch, uniformly over the retain classes
(``label_pool="retain"``, the paper's choice) or over all classes other than the sample's own
(``"all"``; SalUn's code draws over all classes, the sample's own included). Cross-entropy on
the whole mixed batch.
"""

from jaxunlearn import train
from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings, random_retain_labels


def make_loss(label_pool: str = "retain"):
    def random_label_loss(net, params, batch_stats, batch, key, hparams, aux):
        b = batch["all"]
        labels = random_retain_labels(key, b["labels"], b["forget"], aux["retain_classes"], label_pool)
        logits, _, bs = net.forward(params, batch_stats, b["images"], True)
        loss = train.cross_entropy(logits, labels)
        return loss, (bs, {"loss": loss, "accuracy": train.accuracy(logits, b["labels"])})

    return random_label_loss


LABEL_POOL = opt.Choice("label_pool", "retain", ("retain", "all"),
                        "random labels from the retain classes (the paper) or all classes but the sample's own")


def phases(s):
    return [Phase("random_label", make_loss(s.option("label_pool", "retain")), {"all": s.batch_size}, "all",
                  s.epochs)]


def prepare(key, net, state, problem, hparams, settings):
    return state, {"retain_classes": problem.retain_classes}


METHOD = Method(
    name="random_label",
    summary="relabel forget samples with random retain classes",
    hparams={"lr": 0.01},
    options=(opt.LR(), *opt.TRAINING, LABEL_POOL),
    settings=Settings(epochs=1),
    phases=phases,
    prepare=prepare,
)
