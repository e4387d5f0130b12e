"""Pure whole runs: equal to the host drivers, vmappable over seeds and padded forget sets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import data as data_lib, runs, seeds as seeds_lib, strategy, train
from jaxunlearn.unlearn import METHODS, get_method, make_problem, make_problems, make_unlearn, sweep, unlearn


def _maxdiff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def small(digits):
    """A briefly trained digits MLP (a few seconds) and the forget-class-3 problem."""
    net, state, _ = runs.train_model(digits, "mlp", runs.recipe_for("digits", "mlp", epochs=4), seed=0,
                                     progress=False)
    return net, state, make_problem(digits, data_lib.parse_forget("3", 10))


@pytest.mark.parametrize("name,mode", [("random_label", "full"), ("random_label", "classifier_only"),
                                       ("random_label", "cmf"), ("salun", "full"), ("neggrad_plus", "cmf"),
                                       ("scrub", "full"), ("ssd", "full"), ("retrain", "full")])
def test_pure_unlearn_equals_the_host_driver(small, name, mode):
    net, state, problem = small
    method = get_method(name)
    settings = method.settings.replace(mode=mode, **({"epochs": 1} if name == "retrain" else {}))
    host = unlearn(method, jax.random.key(1), net, state, problem, None, settings)
    pure, aux = jax.jit(make_unlearn(method, net, settings))(jax.random.key(1), state, problem, None)
    assert _maxdiff(host.state.params, pure.params) < 1e-5
    assert _maxdiff(host.state.batch_stats, pure.batch_stats) < 1e-5 if host.state.batch_stats else True
    assert _maxdiff(host.state.params, state.params) > 1e-3  # the run moved the model
    if mode == "cmf":  # the pure run refreshes the CMF head from the final encoder, as the driver does
        assert _maxdiff(host.aux["cmf"], aux["cmf"]) < 1e-5


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if not m.host_side])
def test_every_traceable_method_traces_with_no_host_work(small, name):
    """eval_shape traces the whole run abstractly: any host read of a traced value would raise."""
    net, state, problem = small
    method = get_method(name)
    out, _ = jax.eval_shape(make_unlearn(method, net), jax.random.key(0), state, problem, None)
    assert jax.tree.structure(out.params) == jax.tree.structure(state.params) or name == "boundary_expand"


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.host_side])
def test_host_side_methods_say_so_and_the_pure_run_refuses_them(small, name):
    net, _, _ = small
    assert get_method(name).host_side and not get_method(name).traceable
    with pytest.raises(ValueError, match="cannot run as a pure function"):
        make_unlearn(name, net)


def test_pure_train_equals_the_host_driver(digits):
    """make_train (validation-best selection in the trace) == runs.train_model (fit's host loop)."""
    recipe = runs.recipe_for("digits", "mlp", epochs=4)
    _, host, _ = runs.train_model(digits, "mlp", recipe, seed=3, progress=False)
    net, states, info = seeds_lib.train_seeds(digits, "mlp", recipe, [3], strategy="vmap")
    assert info["strategy"] == "vmap" and info["strategy_reason"] == "requested"
    assert _maxdiff(host.params, states[0].params) < 1e-5
    assert int(host.step) == int(states[0].step)


def test_vmapped_seeds_equal_looped_seeds_for_train_and_unlearn(digits, small):
    recipe = runs.recipe_for("digits", "mlp", epochs=3)
    seeds = [0, 4, 7]
    _, vm, vinfo = seeds_lib.train_seeds(digits, "mlp", recipe, seeds, strategy="vmap")
    _, lp, linfo = seeds_lib.train_seeds(digits, "mlp", recipe, seeds, strategy="loop")
    assert vinfo["strategy"] == "vmap" and linfo["strategy"] == "loop"
    for a, b in zip(vm, lp):
        assert _maxdiff(a.params, b.params) < 1e-5
    assert _maxdiff(vm[0].params, vm[1].params) > 1e-2  # different seeds, different models

    net, state, problem = small
    method = get_method("random_label")
    for originals in (state, lp):  # one original for every seed, or one original per seed
        v = sweep.unlearn_seeds(method, seeds, net, originals, problem, strategy="vmap")
        l = sweep.unlearn_seeds(method, seeds, net, originals, problem, strategy="loop")
        assert v["strategy"] == "vmap" and l["strategy"] == "loop"
        for i, (a, b) in enumerate(zip(v["states"], l["states"])):
            assert _maxdiff(a.params, b.params) < 1e-5
            src = originals[i] if isinstance(originals, list) else originals
            one = unlearn(method, jax.random.key(seeds[i]), net, src, problem).state
            assert _maxdiff(b.params, one.params) == 0.0


def test_ten_class_sweep_with_unequal_sizes_is_one_vmapped_program(small, digits):
    """Classes have 125..131 training samples: padded to one length, equal to 10 separate runs."""
    net, state, _ = small
    sizes = {int((digits.train_labels == c).sum()) for c in range(10)}
    assert len(sizes) > 1
    method = get_method("neggrad_plus")
    out = sweep.sweep_forget_sets(method, jax.random.key(5), net, state, digits, range(10), strategy="vmap",
                                  keep_states=True)
    assert out["strategy"] == "vmap"
    for c in range(10):
        spec = data_lib.parse_forget(str(c), 10)
        one = unlearn(method, jax.random.key(5), net, state, make_problem(digits, spec)).state
        assert _maxdiff(out["states"][c].params, one.params) < 1e-4
        assert out["forget_accuracy"][c] == pytest.approx(sweep.output_accuracy(net, one, digits, spec)
                                                          ["forget_accuracy"], abs=1e-9)


def test_padded_rows_are_never_drawn(digits):
    """A stream padded with a row outside it draws exactly the unpadded stream's batches."""
    rows = np.flatnonzero(digits.train_labels == 3)
    epoch = train.Epoch(lambda *a: None, {"s": 16}, "s")
    data = {"labels": jnp.asarray(digits.train_labels)}
    key = jax.random.key(0)
    plain = epoch.order(key, data, {"s": jnp.asarray(rows, jnp.int32)}, 2)["s"]
    padded_stream = train.pad_stream(rows, len(rows) + 40)
    padded = epoch.order(key, data, {"s": padded_stream}, 2)["s"]
    assert int(padded[1]) == len(rows)
    np.testing.assert_array_equal(np.asarray(padded[0])[:len(rows)], np.asarray(plain[0]))
    assert set(np.asarray(plain[0]).tolist()) == set(rows.tolist())


def test_stacked_problems_keep_each_problem(digits):
    specs = [data_lib.parse_forget(str(c), 10) for c in (1, 2)]
    stacked = make_problems(digits, specs)
    for i, spec in enumerate(specs):
        one = make_problem(digits, spec)
        n = int(stacked.forget_valid[i].sum())
        np.testing.assert_array_equal(np.asarray(stacked.forget[i])[:n], np.asarray(one.forget))
        np.testing.assert_array_equal(np.asarray(stacked.data["forget"][i]), np.asarray(one.data["forget"]))
        assert int(stacked.retain_valid[i].sum()) == len(one.retain)


def test_strategy_is_measured_and_recorded(digits, small, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXUNLEARN_CACHE", str(tmp_path))
    net, state, _ = small
    plan = strategy.choose(net, state.params, digits.image_shape, 64, 3)
    assert plan["strategy"] in ("vmap", "loop") and plan["measured"]["vmap_s"] > 0 and plan["measured"]["loop_s"] > 0
    assert ("vmapped" in plan["reason"]) and (tmp_path / "strategy.json").is_file()
    assert (plan["strategy"] == "vmap") == (plan["measured"]["vmap_s"] < plan["measured"]["loop_s"])
    assert strategy.choose(net, state.params, digits.image_shape, 64, 1)["strategy"] == "loop"
    assert strategy.choose(net, state.params, digits.image_shape, 64, 3, traceable=False)["strategy"] == "loop"
    with pytest.raises(ValueError, match="traceable"):
        strategy.choose(net, state.params, digits.image_shape, 64, 3, "vmap", traceable=False)
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy.choose(net, state.params, digits.image_shape, 64, 3, "sideways")


def test_parse_seeds():
    assert seeds_lib.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert seeds_lib.parse_seeds("0,3,7") == [0, 3, 7]
    assert seeds_lib.parse_seeds("5") == [5] and seeds_lib.parse_seeds(2) == [2]
    assert seeds_lib.parse_seeds("0-1,5") == [0, 1, 5]
    for bad in ("", "a", "4-2", "-1", "1,1", "0.5"):
        with pytest.raises(ValueError, match="seeds"):
            seeds_lib.parse_seeds(bad)


def test_the_readme_example_of_pure_runs_runs_as_written():
    """The README's code block under "Pure whole runs" executes verbatim (a README sentence is a promise)."""
    import pathlib
    import re
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    section = text[text.index("## Pure whole runs"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert jax.tree.leaves(scope["states"].params)[0].shape[0] == 10
    assert int(scope["state"].step) > 0
