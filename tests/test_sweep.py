"""Sweeps over forget sets: the same numbers as separate runs, and the strategy each used."""

import jax
import numpy as np
import pytest

from jaxunlearn import data as data_lib
from jaxunlearn.data import ForgetSpec
from jaxunlearn.state import tree_equal
from jaxunlearn.unlearn import get_method, make_problem, sweep, unlearn


def test_sweep_over_every_class_matches_separate_runs(trained_digits, digits):
    net, state = trained_digits
    method = get_method("ssd")
    key = jax.random.key(0)
    out = sweep.sweep_forget_sets(method, key, net, state, digits, range(10))
    # digits classes have 125..131 training samples: unequal sizes batch through padding, and
    # the strategy is whatever the measurement on this backend chose
    assert out["strategy"] in ("vmap", "loop") and "measured on cpu" in out["strategy_reason"]
    assert out["forget_sets"] == [f"classes {c}" for c in range(10)]
    assert out["retain_accuracy"].shape == out["forget_accuracy"].shape == out["runtime_s"].shape == (10,)
    assert (out["runtime_s"] > 0).all()
    for c in range(10):
        spec = data_lib.parse_forget(str(c), 10)
        r = unlearn(method, key, net, state, make_problem(digits, spec))
        acc = sweep.output_accuracy(net, r.state, digits, spec)
        assert out["retain_accuracy"][c] == pytest.approx(acc["retain_accuracy"], abs=1e-9)
        assert out["forget_accuracy"][c] == pytest.approx(acc["forget_accuracy"], abs=1e-9)
    assert np.nanmean(out["forget_accuracy"]) < 0.5 and np.nanmean(out["retain_accuracy"]) > 0.9


def test_vmap_matches_the_loop_on_equal_size_forget_sets(trained_digits, digits):
    net, state = trained_digits
    method = get_method("random_label")
    settings = method.settings.replace(epochs=1)
    specs = [ForgetSpec((), 0.1, seed) for seed in range(3)]  # random samples: equal sizes
    key = jax.random.key(1)
    auto = sweep.sweep_forget_sets(method, key, net, state, digits, specs, settings=settings, keep_states=True,
                                   strategy="vmap")
    loop = sweep.sweep_forget_sets(method, key, net, state, digits, specs, settings=settings, strategy="loop",
                                   keep_states=True)
    assert auto["strategy"] == "vmap" and loop["strategy"] == "loop"
    np.testing.assert_allclose(auto["retain_accuracy"], loop["retain_accuracy"], atol=2 / len(digits.test_labels))
    assert np.isnan(auto["forget_accuracy"]).all()  # sample forgetting: no forget-class test samples
    for a, b in zip(auto["states"], loop["states"]):
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_allclose(x, y, atol=1e-4)
    # the forget sets differ, so the runs differ
    assert not tree_equal(auto["states"][0].params, auto["states"][1].params)


def test_devices_strategy_shards_forget_sets_and_matches_the_loop(trained_digits, digits):
    """3 forget sets over the 4 virtual CPU devices (padded to 4): the loop's numbers."""
    assert jax.device_count() >= 4
    net, state = trained_digits
    method = get_method("random_label")
    settings = method.settings.replace(epochs=1)
    specs = [ForgetSpec((), 0.1, seed) for seed in range(3)]
    key = jax.random.key(1)
    dev = sweep.sweep_forget_sets(method, key, net, state, digits, specs, settings=settings, strategy="devices",
                                  keep_states=True)
    loop = sweep.sweep_forget_sets(method, key, net, state, digits, specs, settings=settings, strategy="loop",
                                   keep_states=True)
    assert dev["strategy"] == "devices" and "4 devices" in dev["strategy_note"]
    assert len(dev["states"]) == 3 and dev["runtime_s"].shape == (3,)
    np.testing.assert_allclose(dev["retain_accuracy"], loop["retain_accuracy"], atol=2 / len(digits.test_labels))
    for a, b in zip(dev["states"], loop["states"]):
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_allclose(x, y, atol=1e-4)


def test_host_side_methods_loop_by_their_declaration(trained_digits, digits):
    net, state = trained_digits
    specs = [ForgetSpec((), 0.1, seed) for seed in range(2)]
    out = sweep.sweep_forget_sets("svd", jax.random.key(0), net, state, digits, specs)
    assert out["strategy"] == "loop" and "host-side step" in out["strategy_reason"]
    with pytest.raises(ValueError, match="traceable"):
        sweep.sweep_forget_sets("svd", jax.random.key(0), net, state, digits, specs, strategy="vmap")


def test_refusals(trained_digits, digits):
    net, state = trained_digits
    with pytest.raises(ValueError, match="unknown strategy"):
        sweep.sweep_forget_sets("ssd", jax.random.key(0), net, state, digits, [3], strategy="sideways")
    with pytest.raises(ValueError, match="no forget sets"):
        sweep.sweep_forget_sets("ssd", jax.random.key(0), net, state, digits, [])
    with pytest.raises(ValueError, match="outside"):
        sweep.sweep_forget_sets("ssd", jax.random.key(0), net, state, digits, [10])


def test_hparam_sweep_is_one_vmapped_run_equal_to_separate_runs(trained_digits, digits):
    net, state = trained_digits
    method = get_method("neggrad_plus")
    settings = method.settings.replace(epochs=1)
    problem = make_problem(digits, data_lib.parse_forget("3", 10))
    grid = {"lr": [0.005, 0.02, 0.05], "forget_weight": [1.0, 0.5, 1.0]}
    key = jax.random.key(2)
    stacked = sweep.sweep_hparams(method, key, net, state, problem, grid, settings=settings)
    assert jax.tree.leaves(stacked.params)[0].shape[0] == 3
    for i in range(3):
        one = unlearn(method, key, net, state, problem, {k: v[i] for k, v in grid.items()}, settings).state
        for x, y in zip(jax.tree.leaves(stacked.params), jax.tree.leaves(one.params)):
            np.testing.assert_allclose(x[i], y, atol=1e-4)
    # different rates gave different models
    assert not np.allclose(jax.tree.leaves(stacked.params)[0][0], jax.tree.leaves(stacked.params)[0][1])
    with pytest.raises(ValueError, match="no hyper-parameter alpha"):
        sweep.sweep_hparams(method, key, net, state, problem, {"alpha": [1.0]})
    with pytest.raises(ValueError, match="one common length"):
        sweep.sweep_hparams(method, key, net, state, problem, {"lr": [0.1, 0.2], "forget_weight": [1.0]})


def test_retrain_over_forget_sets_of_unequal_sizes_never_draws_padding(trained_digits, digits):
    """Retrain's retain stream keeps the padded problem's validity mask: class 3 (1164 retain
    rows) padded to class 8's 1170 trains on the batches of its own unpadded run. (Its stream
    was the bare index array, so the 6 padding rows, all row 0, were drawn: 1.7e-4 apart.)"""
    net, state = trained_digits
    method = get_method("retrain")
    settings = method.settings.replace(epochs=1)
    key = jax.random.key(2)
    swept = sweep.sweep_forget_sets(method, key, net, state, digits, ["3", "8"], settings=settings,
                                    strategy="vmap", keep_states=True)
    assert swept["strategy"] == "vmap"
    for spec, got in zip(["3", "8"], swept["states"]):
        alone = unlearn(method, key, net, state, make_problem(digits, data_lib.parse_forget(spec, 10)),
                        settings=settings).state
        for x, y in zip(jax.tree.leaves(got.params), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(x, y, atol=2e-6)
