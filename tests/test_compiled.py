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


def _cli_env(**extra):
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")
           and k != "JAX_COMPILATION_CACHE_DIR"}
    return {**env, **extra}


def _train(tmp_path, name, env):
    import pathlib
    import subprocess
    import sys
    work = tmp_path / name
    exe = str(pathlib.Path(sys.executable).parent / "jaxunlearn")
    r = subprocess.run([exe, "train", "--dataset", "digits", "--epochs", "2",
                        "--no-progress", "--workdir", str(work)], env=env, capture_output=True, text=True)
    return r, work


def test_commands_keep_compiled_programs_on_disk_and_results_are_unchanged(tmp_path):
    """A command writes its compiled programs to JAXUNLEARN_COMPILATION_CACHE; a second command
    loads them (it writes no new entry) and trains the same model; ``off`` writes nothing."""
    cache = tmp_path / "xla"
    first, w1 = _train(tmp_path, "a", _cli_env(JAXUNLEARN_COMPILATION_CACHE=str(cache)))
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "the first command cached nothing"
    second, w2 = _train(tmp_path, "b", _cli_env(JAXUNLEARN_COMPILATION_CACHE=str(cache)))
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in cache.iterdir()) == entries  # every program came from the cache
    off, w3 = _train(tmp_path, "c", _cli_env(JAXUNLEARN_COMPILATION_CACHE="off", XDG_CACHE_HOME=str(tmp_path / "home")))
    assert off.returncode == 0, off.stderr and not (tmp_path / "home").exists()
    states = [runs.load_run(w, dataset=data_lib.load_dataset("digits")).state for w in (w1, w2, w3)]
    assert tree_equal(states[0].params, states[1].params) and tree_equal(states[0].params, states[2].params)


def test_a_cache_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("data")
    r, work = _train(tmp_path, "a", _cli_env(JAXUNLEARN_COMPILATION_CACHE=str(f)))
    assert r.returncode == 2 and not work.exists()
    assert r.stderr.strip().splitlines()[-1] == (f"error: JAXUNLEARN_COMPILATION_CACHE={f} is not a directory; "
                                                 "give a directory, or off to disable the cache")
    assert f.read_text() == "data"


def test_an_unusable_default_place_runs_without_the_cache(tmp_path, monkeypatch):
    """A read-only (here: a file in the way) default cache place turns the cache off instead of
    stopping the command; a chosen path that is unusable is refused."""
    import pytest
    blocker = tmp_path / "home-cache"
    blocker.write_text("not a directory")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv(compiled.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert compiled.enable_persistent_cache() is None
    assert blocker.read_text() == "not a directory"
    with pytest.raises(ValueError, match="cannot create the compilation cache"):
        compiled.enable_persistent_cache(str(blocker / "xla"))
