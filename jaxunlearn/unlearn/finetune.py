"""Retain-FT: fine-tune the original model on the retain set only (cross-entropy).

It forgets only by what retain-only training erodes: weights that no retain sample reinforces
(the forget class's head row) shrink under weight decay. The defaults (lr 0.1, 10 epochs,
weight decay 5e-3) are tuned on the digits MLP, where they take forget class 3 to 2.7 % test
accuracy at 97.5 % retain; at lr 0.01 for 2 epochs with weight decay 5e-4 it stayed at 94.6 %.
Larger models and datasets need their own settings (``jaxunlearn.unlearn.configs``).
"""

from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings, retain_ce

METHOD = Method(
    name="finetune",
    summary="fine-tune on the retain set",
    hparams={"lr": 0.1},
    options=(opt.LR(), *opt.TRAINING),
    settings=Settings(epochs=10, weight_decay=5e-3),
    phases=lambda s: [Phase("finetune", retain_ce, {"retain": s.batch_size}, "retain", s.epochs)],
)
