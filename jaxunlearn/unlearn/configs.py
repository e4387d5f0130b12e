"""Named method settings: the paper's CIFAR-10 / ResNet-18 hyper-parameters (PAPER.md Sec. 3-4).

The defaults in each method module are tuned for the small datasets this library is tested on
(digits, Fashion-MNIST); these are the settings of Gao et al.'s hyper-parameter table for
CIFAR-10, as ``{method: (hparams, Settings)}``, to pass to
:func:`~jaxunlearn.unlearn.core.unlearn`. SGD Nesterov, momentum 0.9, weight decay 5e-4,
batch 128 unless noted; UNSIR uses Adam.

* :data:`CIFAR10`: the plain methods.
* :data:`CIFAR10_CMF`: the CMF variants (``mode="cmf"``; Algorithm 2), multi-class settings.
* :data:`CIFAR10_CMF_SINGLE_CLASS`: the smaller RL / SalUn + CMF rates of the authors'
  single-class run scripts (1e-4 / 2e-4).

The retrain entry follows the original-model recipe (cosine, 200 epochs, lr 0.1; the 5-epoch
warm-up and early stopping of the original recipe are not part of :class:`Settings`).
"""

from jaxunlearn.unlearn.core import Settings

_SGD = Settings(epochs=3, batch_size=128, optimizer="sgd", momentum=0.9, weight_decay=5e-4)

CIFAR10 = {
    "retrain": ({"lr": 0.1}, _SGD.replace(epochs=200, schedule="cosine")),
    "finetune": ({"lr": 1e-3}, _SGD),
    "random_label": ({"lr": 1e-4}, _SGD),
    "salun": ({"lr": 1e-4}, _SGD.replace(threshold=0.5)),
    "neggrad_plus": ({"lr": 1e-4, "forget_weight": 1.0, "clip": 1.0}, _SGD),
    "scrub": ({"lr": 1e-4, "temperature": 4.0, "ce_weight": 0.99, "kl_weight": 0.001},
              _SGD.replace(batch_size=64, msteps=2)),
    "unsir": ({"lr": 5e-5, "noise_lr": 0.1, "noise_reg": 0.1},
              Settings(epochs=3, batch_size=128, optimizer="adam", weight_decay=0.0).replace(
                  impair_epochs=1, per_class=1000, noise_size=64, noise_batch=64, noise_steps=40)),
    "svd": ({"alpha_r": 1000.0, "alpha_f": 30.0}, Settings().replace(samples=900)),
}

CIFAR10_CMF = {
    "random_label": ({"lr": 2e-3}, _SGD.replace(epochs=4, mode="cmf")),
    "salun": ({"lr": 2e-3}, _SGD.replace(epochs=4, mode="cmf", threshold=0.5)),
    "neggrad_plus": ({"lr": 1e-4, "forget_weight": 0.5, "clip": 1.0}, _SGD.replace(mode="cmf")),
    "scrub": ({"lr": 5e-3, "temperature": 4.0, "ce_weight": 0.99, "kl_weight": 0.001},
              _SGD.replace(batch_size=64, mode="cmf", msteps=2)),
    "unsir": ({**CIFAR10["unsir"][0]}, CIFAR10["unsir"][1].replace(mode="cmf")),
}

CIFAR10_CMF_SINGLE_CLASS = {
    **CIFAR10_CMF,
    "random_label": ({"lr": 1e-4}, CIFAR10_CMF["random_label"][1]),
    "salun": ({"lr": 2e-4}, CIFAR10_CMF["salun"][1]),
}

CONFIGS = {"cifar10": CIFAR10, "cifar10_cmf": CIFAR10_CMF, "cifar10_cmf_single_class": CIFAR10_CMF_SINGLE_CLASS}


def get_config(name: str, method: str):
    """``(hparams, settings)`` of ``method`` in the named config; ValueError naming the choices."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    if method not in CONFIGS[name]:
        raise ValueError(f"config {name!r} has no {method!r}; it has {', '.join(CONFIGS[name])}")
    hp, settings = CONFIGS[name][method]
    return dict(hp), settings
