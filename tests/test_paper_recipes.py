"""The paper's original-model recipe on CIFAR / Tiny-ImageNet (issue 16, P3): up to 300 epochs,
5-epoch warm-up then cosine to 1e-5, early stopping on the validation split; the schedule against
a NumPy transcription and early stopping on a tiny digits MLP run."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import configs
from jaxunlearn import runs, seeds as seeds_lib, train


@pytest.mark.parametrize("dataset,model,lr,wd,patience", [("cifar10", "resnet18", 0.01, 5e-4, 50),
                                                          ("cifar100", "resnet18", 0.01, 5e-4, 50),
                                                          ("tiny_imagenet", "resnet50", 0.05, 1e-4, 75)])
def test_paper_recipes(dataset, model, lr, wd, patience):
    r = runs.RECIPES[(dataset, model)]
    assert (r.epochs, r.lr, r.weight_decay, r.momentum, r.batch_size) == (300, lr, wd, 0.9, 128)
    assert (r.warmup_epochs, r.final_lr, r.patience, r.pad, r.flip) == (5, 1e-5, patience, 4, True)
    c = configs.get_config(dataset)
    assert c.train_epochs == 300 and c.retrain_epochs == (300 if dataset == "tiny_imagenet" else 200)
    # the study's Retrain is the same recipe for retrain_epochs (Table 4: 200 epochs at 1e-2)
    retrain = runs.recipe_for(dataset, model, epochs=c.retrain_epochs)
    assert dataclasses.replace(retrain, epochs=300) == r


def test_cpu_recipes_are_unchanged():
    assert runs.RECIPES[("fashion_mnist", "cnn")] == runs.Recipe(epochs=8, batch_size=128, lr=0.05, warmup_epochs=0.5)
    assert runs.RECIPES[("digits", "mlp")] == runs.Recipe(epochs=30, batch_size=64, lr=0.05)
    assert runs.RECIPES[("fashion_mnist", "cnn")].patience is None and runs.RECIPES[("digits", "mlp")].patience is None


def numpy_schedule(steps, lr, warmup, total, final):
    """Linear warm-up ``lr (s + 1) / warmup`` for ``s < warmup``, then cosine from ``lr`` to
    ``final`` at ``total``: ``final + (lr - final) (1 + cos(pi (s - warmup) / (total - warmup))) / 2``."""
    s = np.asarray(steps, np.float64)
    cos = final + (lr - final) * 0.5 * (1 + np.cos(np.pi * np.clip((s - warmup) / (total - warmup), 0, 1)))
    return np.where(s < warmup, lr * (s + 1) / warmup, cos)


@pytest.mark.parametrize("dataset,model", [("cifar10", "resnet18"), ("tiny_imagenet", "resnet50")])
def test_warmup_cosine_schedule_matches_numpy(dataset, model):
    r, spe = runs.RECIPES[(dataset, model)], 7
    cfg = r.optim(spe)
    assert (cfg.warmup_steps, cfg.total_steps, cfg.final_lr) == (5 * spe, 300 * spe, 1e-5)
    steps = np.arange(300 * spe + 1)
    got = np.asarray(train.learning_rate(cfg, jnp.float32(r.lr), jnp.asarray(steps, jnp.int32)))
    want = numpy_schedule(steps, r.lr, 5 * spe, 300 * spe, 1e-5)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-9)
    assert got[0] == pytest.approx(r.lr / 35) and got[34] == pytest.approx(r.lr) and got[-1] == pytest.approx(1e-5)


def test_early_stopping_stops_and_keeps_the_best_state(digits):
    """lr 1e-9: the validation accuracy never improves after epoch 1, so patience 2 stops the run
    after epoch 3 of 6 and returns the epoch-1 state, on the host loop and in the pure (vmapped) run."""
    spe = train.steps_per_epoch(len(digits.train_labels), 64)
    still = runs.recipe_for("digits", "mlp", epochs=6, lr=1e-9, patience=2, warmup_epochs=1)
    _, state, info = runs.train_model(digits, "mlp", still, seed=0, progress=False)
    assert info["epochs_run"] == 3 and info["best_epoch"] == 1
    assert int(state.step) == spe and info["steps"] == spe
    _, states, _ = seeds_lib.train_seeds(digits, "mlp", still, [0], strategy="vmap")
    assert int(states[0].step) == spe
    # without patience every epoch runs
    _, state, info = runs.train_model(digits, "mlp", dataclasses.replace(still, patience=None), seed=0, progress=False)
    assert info["epochs_run"] == 6 and info["best_epoch"] == 1 and int(state.step) == spe
