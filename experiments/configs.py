"""Study configurations: which data, model, forget sets, methods and settings.

``fashion_mnist`` is the main job's default (sized to finish in under 30 minutes on a 2-core
CPU); ``digits`` is the ``--quick`` variant; ``cifar10`` / ``cifar100`` use the paper's
settings (PAPER.md §2-§4) for GPU/TPU users.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class MethodRun:
    """One method as a study runs it: registry name, head mode, overrides, table label."""

    method: str
    mode: str = "full"
    hparams: tuple = ()    # (name, value) overrides of the method's hparams
    settings: tuple = ()   # (name, value) overrides of its Settings / options
    label: str = ""

    @property
    def key(self) -> str:
        return f"{self.method}-{self.mode}"

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        suffix = {"full": "", "classifier_only": " (classifier only)", "cmf": " + CMF"}[self.mode]
        return self.method + suffix


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    name: str
    dataset: str
    model: str
    train_epochs: int
    forget_sets: tuple
    table1: tuple                  # baseline methods (full model)
    table2: tuple                  # classifier-only methods (and classifier_edit)
    table3: tuple                  # CMF methods
    retrain_epochs: int | None = None
    max_train: int | None = None
    cmf_finetune: MethodRun = MethodRun("cmf_finetune", "cmf")
    curve_methods: tuple = ()      # learning_curve experiment
    curve_every: int = 50
    relearn_methods: tuple = ()    # relearn experiment (method keys of table1/table3)
    relearn_samples: tuple = (10, 100)
    relearn_steps: int = 30
    probe: str = "fast"
    seeds: tuple = (0,)


_ONE_EPOCH = (("epochs", 1),)
FASHION_MNIST = StudyConfig(
    name="fashion_mnist",
    dataset="fashion_mnist",
    model="cnn",
    train_epochs=6,
    retrain_epochs=6,
    # 20,000 of the 54k training images (stratified) keep the whole study under 30 minutes on
    # a 2-core CPU; the test split stays the full 10k. (One forget set at 30,000 images took
    # 18 min; each forget set costs one retraining and ~15 unlearning runs and evaluations.)
    max_train=20000,
    # T-shirt/top, a confusable class (a model that never saw it still maps it near shirt /
    # pullover), and Bag, a distinct one: the table's mean +- std is over these two. Add more
    # (e.g. (6,) Shirt or (2, 4, 6)) for GPU runs; each costs ~8 minutes on this CPU.
    forget_sets=((0,), (8,)),
    # finetune: the setting this study has always used (the method's digits defaults, lr 0.1 for 10
    # epochs with weight decay 5e-3, are tuned for the digits MLP).
    table1=(MethodRun("finetune", hparams=(("lr", 0.01),), settings=_ONE_EPOCH + (("weight_decay", 5e-4),)),
            MethodRun("random_label"), MethodRun("salun"),
            MethodRun("neggrad_plus", settings=_ONE_EPOCH),
            # SCRUB's max pass is unbounded (it maximises a KL): at the method's digits default
            # (lr 0.01) one pass over the forget class wrecked the model (51 % retain); at 3e-4
            # the output kept 40-55 % forget accuracy. 1e-3 gave 0 % forget at 85-87 % retain
            # (measured with `jaxunlearn unlearn` on this study's original model). Paper: 1e-4.
            MethodRun("scrub", hparams=(("lr", 1e-3),), settings=_ONE_EPOCH + (("msteps", 1),)),
            MethodRun("svd")),
    table2=(MethodRun("random_label", "classifier_only"), MethodRun("neggrad_plus", "classifier_only", settings=_ONE_EPOCH),
            MethodRun("classifier_edit")),
    # CMF logits are cosines (temperature 1), so their gradients are small: CMF variants need
    # larger rates than the linear-head methods, as in the paper (RL 1e-4 vs RL+CMF 2e-3).
    table3=(MethodRun("random_label", "cmf", (("lr", 0.05),)), MethodRun("salun", "cmf", (("lr", 0.05),)),
            MethodRun("neggrad_plus", "cmf", (("lr", 0.02), ("forget_weight", 0.5)), _ONE_EPOCH),
            MethodRun("scrub", "cmf", (("lr", 0.05),), _ONE_EPOCH + (("msteps", 1),))),
    curve_methods=(MethodRun("random_label"), MethodRun("random_label", "cmf", (("lr", 0.05),))),
    # The relearning attack on Retrain, RL and RL + CMF (forget set 0). All 11 unlearned models
    # of tables 1 and 3 (keys "finetune-full", "salun-full", ..., "scrub-cmf") took the fresh
    # study from 21.4 to 29.2 minutes on the 2-core CPU with the earlier forget-only attack (the
    # balanced attack set costs ~25 % more): too close to the 30-minute budget.
    relearn_methods=("retrain", "random_label-full", "random_label-cmf"),
)

DIGITS = dataclasses.replace(
    FASHION_MNIST,
    name="digits",
    dataset="digits",
    model="mlp",
    max_train=None,
    train_epochs=20,
    retrain_epochs=20,
    forget_sets=((3,), (8,)),
    table3=(MethodRun("random_label", "cmf", (("lr", 0.2),), (("epochs", 3),)),
            MethodRun("salun", "cmf", (("lr", 0.2),), (("epochs", 3),)),
            MethodRun("neggrad_plus", "cmf", (("lr", 0.05), ("forget_weight", 0.5)), (("epochs", 3),)),
            MethodRun("scrub", "cmf", (("lr", 0.2),), (("epochs", 3),))),
    curve_methods=(MethodRun("random_label"), MethodRun("random_label", "cmf", (("lr", 0.2),), (("epochs", 3),))),
    curve_every=5,
)

_PAPER_RL = (("epochs", 3),)
CIFAR10 = StudyConfig(
    name="cifar10",
    dataset="cifar10",
    model="resnet18",
    train_epochs=200,
    retrain_epochs=200,
    forget_sets=tuple((c,) for c in range(10)) + ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 5, 9), (2, 4, 8)),
    table1=(MethodRun("finetune", hparams=(("lr", 1e-3),), settings=(("epochs", 3),)),
            MethodRun("random_label", hparams=(("lr", 1e-4),), settings=_PAPER_RL),
            MethodRun("salun", hparams=(("lr", 1e-4),), settings=_PAPER_RL + (("threshold", 0.5),)),
            MethodRun("neggrad_plus", hparams=(("lr", 1e-4),), settings=(("epochs", 3),)),
            MethodRun("scrub", hparams=(("lr", 1e-4),), settings=(("epochs", 3), ("batch_size", 64), ("msteps", 2))),
            MethodRun("unsir", hparams=(("lr", 5e-5),), settings=(("epochs", 3),)),
            MethodRun("svd", hparams=(("alpha_r", 1000.0), ("alpha_f", 30.0)), settings=(("samples", 900),))),
    table2=(MethodRun("random_label", "classifier_only", (("lr", 1e-4),), _PAPER_RL),
            MethodRun("neggrad_plus", "classifier_only", (("lr", 1e-4),), (("epochs", 3),)),
            MethodRun("classifier_edit")),
    table3=(MethodRun("random_label", "cmf", (("lr", 2e-3),), (("epochs", 4),)),
            MethodRun("salun", "cmf", (("lr", 2e-3),), (("epochs", 4),)),
            MethodRun("neggrad_plus", "cmf", (("lr", 1e-4), ("forget_weight", 0.5)), (("epochs", 3),)),
            MethodRun("scrub", "cmf", (("lr", 5e-3),), (("epochs", 3), ("batch_size", 64))),
            MethodRun("unsir", "cmf", (("lr", 5e-5),), (("epochs", 3),))),
    cmf_finetune=MethodRun("cmf_finetune", "cmf", (("lr", 3e-4),), (("epochs", 1), ("weight_decay", 1e-4))),
    curve_methods=(MethodRun("random_label", hparams=(("lr", 1e-4),)),
                   MethodRun("random_label", "cmf", (("lr", 2e-3),))),
    curve_every=100,
    relearn_methods=("retrain", "random_label-full", "random_label-cmf"),
)

CIFAR100 = dataclasses.replace(
    CIFAR10,
    name="cifar100",
    dataset="cifar100",
    forget_sets=((0,), (1,), (2,), (3,), (5,)),  # plus the paper's 10-class coarse sets (set by the user)
)

CONFIGS = {c.name: c for c in (FASHION_MNIST, DIGITS, CIFAR10, CIFAR100)}


def get_config(name: str) -> StudyConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown study config {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name]
