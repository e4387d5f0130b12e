"""CMF head: NumPy transcription, exact-collapse accuracy, and CMF unlearning moves only the encoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import cmf, data as data_lib, train
from jaxunlearn.models import HEAD
from jaxunlearn.state import tree_equal
from jaxunlearn.unlearn import METHODS, make_problem, unlearn


def numpy_cmf(f, y, k, temperature=1.0):
    f = np.asarray(f, np.float64)
    z = f / np.linalg.norm(f, axis=1, keepdims=True)
    means = np.stack([z[y == c].mean(0) for c in range(k)])
    mu = z.mean(0)
    w = (means - mu) / np.linalg.norm(means - mu, axis=1, keepdims=True)
    x = z - mu
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return w, mu, temperature * x @ w.T


@pytest.mark.parametrize("seed", [0, 1])
def test_cmf_matches_numpy_transcription(seed):
    rng = np.random.default_rng(seed)
    k, d = 5, 12
    y = rng.integers(0, k, 300)  # unbalanced classes
    f = rng.normal(size=(300, d)) + 3 * rng.normal(size=(k, d))[y]
    head = cmf.cmf_head(jnp.asarray(f, jnp.float32), jnp.asarray(y), k, temperature=2.0)
    w, mu, logits = numpy_cmf(f, y, k, 2.0)
    np.testing.assert_allclose(head.weights, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.center, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cmf.cmf_logits(head, jnp.asarray(f, jnp.float32)), logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(head.weights, axis=1), 1.0, rtol=1e-6)


def test_features_on_their_class_means_give_100_percent():
    k, d = 10, 32
    rng = np.random.default_rng(0)
    means = rng.normal(size=(k, d))
    y = np.repeat(np.arange(k), 20)
    f = jnp.asarray(means[y], jnp.float32)
    head = cmf.cmf_head(f, jnp.asarray(y), k)
    pred = np.asarray(cmf.cmf_logits(head, f).argmax(-1))
    assert (pred == y).mean() == 1.0


def test_class_without_samples_gets_zero_row():
    f = jnp.asarray(np.random.default_rng(0).normal(size=(20, 4)), jnp.float32)
    y = jnp.asarray(np.arange(20) % 3)
    head = cmf.cmf_head(f, y, 4)
    np.testing.assert_array_equal(head.weights[3], 0.0)


@pytest.fixture(scope="module")
def cnn_digits(digits):
    from jaxunlearn import runs
    recipe = runs.recipe_for("digits", "cnn", epochs=3)
    net, state, _ = runs.train_model(digits, "cnn", recipe, seed=0, progress=False)
    return net, state


def test_cmf_unlearning_moves_only_the_encoder(digits, cnn_digits):
    net, state = cnn_digits
    problem = make_problem(digits, data_lib.parse_forget("3", 10))
    m = METHODS["random_label"]
    r = unlearn(m, jax.random.key(0), net, state, problem, {"lr": 0.05}, m.settings.replace(mode="cmf"))
    # W is a buffer (in aux), never a parameter: the linear head is untouched bit for bit ...
    assert tree_equal(r.state.params[HEAD], state.params[HEAD])
    assert "cmf" not in r.state.params
    # ... while the encoder moved
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves({k: v for k, v in r.state.params.items() if k != HEAD}),
                                                      jax.tree.leaves({k: v for k, v in state.params.items() if k != HEAD}))]
    assert all(moved)
    # the head returned for evaluation is recomputed from the final encoder
    predict = train.make_predict(net)
    _, feats = predict(r.state.params, r.state.batch_stats, jnp.asarray(digits.train_images))
    fresh = cmf.cmf_head(feats["features"], jnp.asarray(digits.train_labels), 10)
    np.testing.assert_allclose(r.aux["cmf"].weights, fresh.weights, rtol=1e-5, atol=1e-6)


def test_cmf_head_is_refreshed_every_epoch(digits, cnn_digits, monkeypatch):
    from helpers import count_cmf_refreshes
    net, state = cnn_digits
    problem = make_problem(digits, data_lib.parse_forget("3", 10))
    seen = count_cmf_refreshes(monkeypatch)
    m = METHODS["finetune"]
    unlearn(m, jax.random.key(0), net, state, problem, {"lr": 0.01}, m.settings.replace(mode="cmf", epochs=2))
    assert seen[:2] == [0, 1] and seen[-1] == -1  # start of each epoch, then once from the final encoder


COMPOSING = sorted(n for n, m in METHODS.items() if m.classifier_loss and not m.from_scratch)


@pytest.mark.parametrize("name", COMPOSING)
def test_every_classifier_loss_method_composes_with_the_cmf_head(name, digits, trained_digits):
    """Algorithm 2 for any registry method with a classifier loss: the linear head is neither
    used nor changed (replacing it by noise gives a bit-identical encoder), the encoder moves,
    and the returned CMF head is the one of the final encoder."""
    net, state = trained_digits
    problem = make_problem(digits, data_lib.parse_forget("3", 10))
    m = METHODS[name]
    settings = m.settings.replace(mode="cmf", epochs=2 if name == "unsir" else 1)  # UNSIR: impair + repair
    noisy_head = jax.tree.map(lambda w: jax.random.normal(jax.random.key(7), w.shape, w.dtype), state.params[HEAD])
    noisy = state._replace(params={**state.params, HEAD: noisy_head})
    runs_ = [unlearn(m, jax.random.key(0), net, s, problem, {"lr": 0.05}, settings) for s in (state, noisy)]
    encoder = lambda p: {k: v for k, v in p.items() if k != HEAD}
    assert tree_equal(encoder(runs_[0].state.params), encoder(runs_[1].state.params))
    assert tree_equal(runs_[0].state.batch_stats, runs_[1].state.batch_stats)
    assert tree_equal(runs_[0].state.params[HEAD], state.params[HEAD])
    assert tree_equal(runs_[1].state.params[HEAD], noisy_head)
    assert not tree_equal(encoder(runs_[0].state.params), encoder(state.params))
    _, feats = train.make_predict(net)(runs_[0].state.params, runs_[0].state.batch_stats, jnp.asarray(digits.train_images))
    fresh = cmf.cmf_head(feats["features"], jnp.asarray(digits.train_labels), 10)
    np.testing.assert_allclose(runs_[0].aux["cmf"].weights, fresh.weights, rtol=1e-5, atol=1e-6)


def test_cmf_refresh_reuses_its_head_only_for_the_same_arrays(trained_digits, digits):
    """The refresh returns the head of its previous call when handed the very same parameter
    and statistics objects (no second forward pass), and recomputes it for new arrays; both
    equal the class-mean head of the encoder's features computed directly."""
    from jaxunlearn.state import TrainState
    from jaxunlearn.unlearn.core import make_cmf_refresh
    net, state = trained_digits
    data = {"images": jnp.asarray(digits.train_images), "labels": jnp.asarray(digits.train_labels)}
    refresh = make_cmf_refresh(net, data, digits.num_classes)
    first = refresh(state, 0, {"other": 1})
    again = refresh(TrainState(state.params, state.batch_stats, None, state.step), 1, {"other": 2})
    assert again["cmf"] is first["cmf"] and again["other"] == 2
    moved = TrainState(jax.tree.map(lambda x: x * 1.01, state.params), state.batch_stats, None, state.step)
    recomputed = refresh(moved, 2, {})["cmf"]
    assert recomputed is not first["cmf"]
    for st, head in ((state, first["cmf"]), (moved, recomputed)):
        _, feats, _ = net.forward(st.params, st.batch_stats, data["images"], False)
        want = cmf.cmf_head(feats["features"], data["labels"], digits.num_classes)
        for a, b in zip(jax.tree.leaves(head), jax.tree.leaves(want)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
