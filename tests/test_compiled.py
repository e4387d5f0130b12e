"""Host drivers reuse compiled steps across runs of the same shape; results are unchanged."""

import jax
import numpy as np

from jaxunlearn import compiled, data as data_lib, runs
from jaxunlearn.state import tree_equal
from jaxunlearn.unlearn import get_method, make_problem, unlearn


def test_cached_builds_once_per_key_and_not_for_unhashable_keys():
    calls = []
    build = lambda: calls.append(1) or object()
    a = compiled.cached(("k", 1), build)
    assert compiled.cached(("k", 1), build) is a and len(calls) == 1
    assert compiled.cached(("k", 2), build) is not a and len(calls) == 2
    compiled.cached(("k", {"unhashable": 1}), build)
    compiled.cached(("k", {"unhashable": 1}), build)
    assert len(calls) == 4


def test_second_unlearning_run_reuses_the_step_and_equals_a_fresh_build(digits, trained_digits):
    net, state = trained_digits
    method = get_method("random_label")
    problem = make_problem(digits, data_lib.parse_forget("3", digits.num_classes))
    compiled.clear()
    first = unlearn(method, jax.random.key(5), net, state, problem)
    size = len(compiled._CACHE)
    again = unlearn(method, jax.random.key(5), net, state, problem)
    assert len(compiled._CACHE) == size          # no new runner was built
    assert tree_equal(first.state.params, again.state.params)
    compiled.clear()                             # a fresh build gives the same bits
    fresh = unlearn(method, jax.random.key(5), net, state, problem)
    assert tree_equal(first.state.params, fresh.state.params)


def test_train_model_reuses_the_step_across_seeds(digits):
    recipe = runs.recipe_for("digits", "mlp", epochs=2)
    compiled.clear()
    _, a, _ = runs.train_model(digits, "mlp", recipe, seed=1, progress=False)
    size = len(compiled._CACHE)
    _, b, _ = runs.train_model(digits, "mlp", recipe, seed=2, progress=False)
    assert len(compiled._CACHE) == size
    compiled.clear()
    _, b2, _ = runs.train_model(digits, "mlp", recipe, seed=2, progress=False)
    assert tree_equal(b.params, b2.params) and not np.allclose(np.asarray(a.params["head"]["kernel"]),
                                                               np.asarray(b.params["head"]["kernel"]))
