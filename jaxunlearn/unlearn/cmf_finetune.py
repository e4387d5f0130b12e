"""CMF fine-tuning: turn an original model into a CMF model (encoder + class-mean head).

Cross-entropy with true labels on the whole training set, through the CMF head recomputed
at the start of every epoch; only the encoder moves. Run it with ``mode="cmf"`` (the paper:
one epoch, lr 3e-4, weight decay 1e-4).
"""

from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings, retain_ce

METHOD = Method(
    name="cmf_finetune",
    summary="prepare a CMF model: fine-tune the encoder through the CMF head",
    hparams={"lr": 3e-4},
    options=(opt.LR(), *opt.TRAINING),
    settings=Settings(epochs=1, weight_decay=1e-4, mode="cmf"),
    phases=lambda s: [Phase("cmf_finetune", lambda *a: retain_ce(*a, stream="all"), {"all": s.batch_size},
                            "all", s.epochs)],
)
