"""Retain-FT: fine-tune the original model on the retain set only (cross-entropy)."""

from jaxunlearn.unlearn.core import Method, Phase, Settings, retain_ce

METHOD = Method(
    name="finetune",
    summary="fine-tune on the retain set",
    hparams={"lr": 0.01},
    settings=Settings(epochs=2),
    phases=lambda s: [Phase("finetune", retain_ce, {"retain": s.batch_size}, "retain", s.epochs)],
)
