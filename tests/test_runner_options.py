"""Runner options the authors' protocols need: total-gradient clipping, per-phase rates,
SCRUB + CMF's one refresh per epoch, plain (non-Nesterov) momentum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import data as data_lib, runs, train
from jaxunlearn.state import tree_equal
from helpers import count_cmf_refreshes
from jaxunlearn.unlearn import Method, Phase, Settings, core, get_method, make_problem, unlearn


def test_total_gradient_is_clipped_before_decay_and_momentum():
    """One SGD step: d = g * min(1, c / ||g||) + wd * p (PyTorch: clip_grad_norm_ then step)."""
    cfg = train.OptimConfig(momentum=0.9, nesterov=False, weight_decay=0.1, clip_norm=1.0)
    tx = train.make_gradient_transform(cfg)
    p = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5]])}
    g = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}  # global norm 5
    d, _ = tx.update(g, tx.init(p), p)
    scale = 1.0 / 5.0
    np.testing.assert_allclose(d["a"], np.array([3.0, 0.0]) * scale + 0.1 * np.array([1.0, -2.0]), rtol=1e-6)
    np.testing.assert_allclose(d["b"], np.array([[4.0]]) * scale + 0.1 * 0.5, rtol=1e-6)
    small = {"a": jnp.array([0.3, 0.0]), "b": jnp.array([[0.4]])}  # norm 0.5 < 1: unchanged
    d2, _ = tx.update(small, tx.init(p), p)
    np.testing.assert_allclose(d2["a"], np.array([0.3, 0.0]) + 0.1 * np.array([1.0, -2.0]), rtol=1e-6)


def test_plain_momentum_is_heavy_ball():
    cfg = train.OptimConfig(momentum=0.9, nesterov=False, weight_decay=0.0)
    tx = train.make_gradient_transform(cfg)
    p = {"w": jnp.zeros(2)}
    g = {"w": jnp.array([1.0, 2.0])}
    st = tx.init(p)
    d1, st = tx.update(g, st, p)
    d2, _ = tx.update(g, st, p)
    np.testing.assert_allclose(d1["w"], [1.0, 2.0])          # buf = g
    np.testing.assert_allclose(d2["w"], [1.9, 3.8], rtol=1e-6)  # buf = 0.9 g + g, no look-ahead
    assert get_method("scrub").settings.nesterov is False  # the authors' SCRUB optimiser


@pytest.fixture(scope="module")
def small(digits):
    net, state, _ = runs.train_model(digits, "mlp", runs.recipe_for("digits", "mlp", epochs=3), seed=0,
                                     progress=False)
    return net, state, make_problem(digits, data_lib.parse_forget("3", 10))


def test_a_phase_reads_its_own_rate(small):
    net, state, problem = small
    phase = Phase("p", core.retain_ce, {"retain": 64}, "retain", 1, lr="other_lr")
    method = Method("two_rates", "test", {"lr": 0.1, "other_lr": 0.0}, Settings(momentum=0.0, weight_decay=0.0),
                    phases=lambda s: [phase])
    frozen = unlearn(method, jax.random.key(0), net, state, problem).state
    assert tree_equal(frozen.params, state.params)  # its rate is other_lr = 0, not lr = 0.1
    moved = unlearn(method, jax.random.key(0), net, state, problem, {"other_lr": 0.1}).state
    assert not tree_equal(moved.params, state.params)
    unsir = get_method("unsir").phases(get_method("unsir").settings)
    assert [p.lr for p in unsir] == ["impair_lr", "lr"]
    bad = Method("bad", "test", {"lr": 0.1}, Settings(), phases=lambda s: [phase])
    with pytest.raises(ValueError, match="other_lr"):
        unlearn(bad, jax.random.key(0), net, state, problem)


def test_scrub_cmf_refreshes_the_head_once_per_epoch(small, monkeypatch):
    """3 epochs with 2 max passes: W at the start, after each epoch's min pass, and the final one."""
    net, state, problem = small
    calls = count_cmf_refreshes(monkeypatch)
    method = get_method("scrub")
    settings = method.settings.replace(mode="cmf", epochs=3, msteps=2)
    names = [(p.name, p.refresh_cmf) for p in method.phases(settings)]
    assert names == [("max1", True), ("min1", False), ("max2", True), ("min2", False), ("min3", True)]
    unlearn(method, jax.random.key(0), net, state, problem, None, settings)
    # prepare (the teacher's head), one per epoch (max1, max2, min3), and the final encoder's
    assert len(calls) == 5 and calls[-1] == -1


def test_unlearning_augments_images_when_asked(small):
    """The paper configs crop and flip during unlearning (the authors' loaders); same model from the
    pure run and the host driver, a different one from the unaugmented run."""
    from jaxunlearn.unlearn import make_unlearn
    net, state, problem = small
    method = get_method("finetune")
    plain = method.settings.replace(epochs=1)
    aug = plain.replace(augment_pad=2, augment_flip=True)
    a = unlearn(method, jax.random.key(0), net, state, problem, None, aug).state
    b = unlearn(method, jax.random.key(0), net, state, problem, None, plain).state
    assert not tree_equal(a.params, b.params)
    pure, _ = jax.jit(make_unlearn(method, net, aug))(jax.random.key(0), state, problem, None)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(pure.params)):
        np.testing.assert_allclose(x, y, atol=1e-5)
    from jaxunlearn.unlearn import configs
    assert configs.CIFAR10["random_label"][1].augment_pad == 4 and configs.CIFAR10["random_label"][1].augment_flip
