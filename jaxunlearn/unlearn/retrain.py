"""Retrain: train from scratch on the retain set only (the gold standard).

Never reads a forget sample: its only stream is the retain set. Uses the original model's
schedule shape (cosine); set ``epochs`` and ``lr`` to the original recipe's.
"""

from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Phase, Settings, retain_ce

METHOD = Method(
    name="retrain",
    summary="train from scratch on the retain set",
    hparams={"lr": 0.05},
    options=(opt.LR("learning rate (cosine schedule by default)"), *opt.TRAINING),
    settings=Settings(epochs=8, schedule="cosine"),
    phases=lambda s: [Phase("retrain", retain_ce, {"retain": s.batch_size}, "retain", s.epochs)],
    streams=lambda problem, s: {"retain": problem.stream("retain")},
    from_scratch=True,
)
