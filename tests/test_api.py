"""The Python API (``import jaxunlearn as ju``) and the relaxed model contract.

Each user module below is a few lines of Flax: a head at another path, a head without a
bias, float inputs used as they are, dropout. Numbers are checked against an independent
computation (``module.apply`` by hand, NumPy, sklearn) or the library's lower layer called
directly with the same arguments (the API must add nothing but plumbing).
"""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxunlearn as ju
from jaxunlearn import data as data_lib
from jaxunlearn.state import tree_equal


# ----------------------------------------------------------------------------- user modules

class Nested(nn.Module):
    """An MLP whose head is params["classifier"]["fc"]."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.relu(nn.Dense(32, name="body")(x.reshape(x.shape[0], -1)))
        return Classifier(self.num_classes, name="classifier")(h), {"features": h, "stage1": h}


class Classifier(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, h):
        return nn.Dense(self.num_classes, name="fc")(h)


class NoBias(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes, use_bias=False, name="head")(h), {"features": h}


class WithDropout(nn.Module):
    num_classes: int = 10
    rate: float = 0.5

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
        h = nn.Dropout(self.rate, deterministic=not train)(h)
        return nn.Dense(self.num_classes, name="head")(h), {"features": h}


@pytest.fixture(scope="module")
def arrays():
    """Digits as float arrays in [0, 1] and as uint8 pixels: (x_float, x_uint8, labels)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))[:900]
    xf = (d.images[order] / 16.0).astype(np.float32)[..., None]
    xu = np.clip(d.images[order] * 16, 0, 255).astype(np.uint8)[..., None]
    return xf, xu, d.target[order]


@pytest.fixture(scope="module")
def ds(arrays):
    xf, _, y = arrays
    return ju.dataset_from_arrays((xf[:700], y[:700]), (xf[700:], y[700:]), val_fraction=0.1)


@pytest.fixture(scope="module")
def nested(ds):
    net = ju.as_net(Nested(), ds, head_path="classifier/fc")
    state, info = ju.train_model(net, ds, epochs=3, lr=0.05, batch_size=64)
    return net, state, info


# ----------------------------------------------------------------------------- the package

def test_import_is_lazy_and_sets_the_xla_flag():
    code = ("import os, sys; import jaxunlearn as ju; "
            "print('jax' in sys.modules, 'ynn' in os.environ.get('XLA_FLAGS', ''), len(ju.__all__))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    jax_loaded, flag, n = out.stdout.split()
    assert jax_loaded == "False"  # importing the package loads neither JAX nor the methods
    from importlib.metadata import version
    assert flag == str(tuple(int(p) for p in version("jaxlib").split(".")[:2]) == (0, 12))
    assert int(n) > 30


def test_every_public_name_resolves():
    for name in ju.__all__:
        assert getattr(ju, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ju.nope  # noqa: B018


def test_callable_submodules_stay_modules():
    from jaxunlearn import analyze, evaluate, unlearn
    assert callable(ju.unlearn) and callable(ju.evaluate) and callable(ju.analyze)
    assert ju.evaluate is evaluate and hasattr(evaluate, "extract")  # still the module
    assert ju.unlearn is unlearn and "random_label" in unlearn.METHODS
    assert hasattr(analyze, "analyze_features")
    # whichever comes first, a later import of the submodule keeps it callable
    code = ("import jaxunlearn.evaluate, jaxunlearn.analyze; import jaxunlearn as ju; "
            "print(callable(ju.evaluate), callable(ju.analyze), callable(ju.unlearn))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


# ----------------------------------------------------------------------------- datasets

def test_dataset_from_uint8_arrays_normalises_per_channel(arrays):
    _, xu, y = arrays
    ds = ju.dataset_from_arrays((xu[:700], y[:700]), (xu[700:], y[700:]), val_fraction=0.2, seed=1)
    assert ds.num_classes == 10 and ds.train_images.dtype == np.uint8
    # the stratified hold-out: round(0.2 * n_c) of every class
    for c in range(10):
        n_c = int((y[:700] == c).sum())
        assert int((ds.val_labels == c).sum()) == int(round(0.2 * n_c))
    assert len(ds.train_labels) + len(ds.val_labels) == 700
    x = ds.train_images.astype(np.float64) / 255.0
    np.testing.assert_allclose(ds.mean, [x.mean()], rtol=1e-6)
    np.testing.assert_allclose(ds.std, [x.std()], rtol=1e-6)
    net = ju.as_net(NoBias(), ds)
    params, bs = net.init(jax.random.key(0), ds.image_shape)
    logits, _, _ = net.forward(params, bs, jnp.asarray(ds.test_images[:5]), False)
    ref = NoBias().apply({"params": params}, (ds.test_images[:5] / 255.0 - ds.mean[0]) / ds.std[0])[0]
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_dataset_from_float_arrays_skips_normalisation(arrays, ds):
    xf, _, y = arrays
    assert ds.mean is None and ds.std is None and ds.train_images.dtype == np.float32
    net = ju.as_net(Nested(), ds, head_path="classifier/fc")
    params, bs = net.init(jax.random.key(1), ds.image_shape)
    logits, feats, _ = net.forward(params, bs, jnp.asarray(xf[700:710]), False)
    ref_logits, ref_feats = Nested().apply({"params": params}, jnp.asarray(xf[700:710]))
    assert np.array_equal(np.asarray(logits), np.asarray(ref_logits))  # the inputs as they are
    assert np.array_equal(np.asarray(feats["features"]), np.asarray(ref_feats["features"]))
    # explicit val split and grayscale [N, H, W] arrays
    d2 = ju.dataset_from_arrays((xf[:600, ..., 0], y[:600]), (xf[700:, ..., 0], y[700:]),
                                val=(xf[600:700, ..., 0], y[600:700]))
    assert d2.image_shape == (8, 8, 1) and len(d2.val_labels) == 100 and len(d2.train_labels) == 600


@pytest.mark.parametrize("kw, message", [
    (dict(train=(np.zeros((4, 2, 2, 1)), np.zeros(3, int))), "labels must be \\[N\\] = \\[4\\]"),
    (dict(train=(np.zeros((4, 2, 2, 1)), np.asarray([0, 1.5, 1, 0]))), "integer class ids"),
    (dict(train=(np.zeros((4, 2, 2, 1)), np.asarray([0, -1, 1, 0]))), ">= 0"),
    (dict(num_classes=1), "labels go up to 1"),
    (dict(test=(np.zeros((2, 3, 3, 1)), np.zeros(2, int))), "differ in shape"),
    (dict(val_fraction=1.0), "val_fraction must be in"),
    (dict(mean=(0.5,), std=None), "both mean and std"),
    (dict(train=(np.zeros((4, 2, 2, 1), np.int64), np.asarray([0, 1, 1, 0]))), "uint8 pixels or floats"),
])
def test_dataset_from_arrays_refuses_bad_input(kw, message):
    args = dict(train=(np.zeros((4, 2, 2, 1), np.float32), np.asarray([0, 1, 1, 0])),
                test=(np.zeros((2, 2, 2, 1), np.float32), np.asarray([0, 1])))
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        ju.dataset_from_arrays(args.pop("train"), args.pop("test"), **args)


# ----------------------------------------------------------------------------- the model contract

class NoTrainArg(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1)), {"features": x}


class LogitsOnly(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))


class NoFeatures(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1)), {"hidden": x}


@pytest.mark.parametrize("module, kw, message", [
    (NoTrainArg(), {}, "must accept train="),
    (LogitsOnly(), {}, "must return \\(logits"),
    (NoFeatures(), {}, "no 'features' entry"),
    (Nested(), {}, "no head at 'head': params has body, classifier; pass head_path"),
    (Nested(), {"head_path": "classifier/out"}, "classifier has fc"),
    (Nested(num_classes=7), {"head_path": "classifier/fc"}, "expected \\[B, 10\\]"),
])
def test_as_net_refuses_a_module_that_breaks_the_contract(ds, module, kw, message):
    with pytest.raises(ValueError, match=message):
        ju.as_net(module, ds, **kw)


def test_named_models_and_head_path_forms(ds):
    net = ju.as_net("mlp", ds)
    assert net.head_path == ("head",) and net.mean is None
    assert ju.as_net(Nested(), ds, head_path=("classifier", "fc")).head_path == ("classifier", "fc")
    with pytest.raises(ValueError, match="needs num_classes or a dataset"):
        ju.as_net("mlp")
    with pytest.raises(ValueError, match="head_path must name"):
        ju.Net(Nested(), None, None, head_path="")


def test_nested_head_helpers(nested):
    net, state, _ = nested
    head = state.params["classifier"]["fc"]
    assert net.head_params(state.params) is head
    w, b = net.head_weights(state.params)
    assert np.array_equal(w, np.asarray(head["kernel"]).T) and np.array_equal(b, np.asarray(head["bias"]))
    mask = net.head_mask(state.params, trainable_head=True)
    assert mask["classifier"]["fc"]["kernel"] and not mask["body"]["kernel"]
    zeroed = net.replace_head(state.params, jax.tree.map(jnp.zeros_like, head))
    assert not np.any(np.asarray(zeroed["classifier"]["fc"]["kernel"]))
    assert zeroed["body"] is state.params["body"]


def test_classifier_only_moves_the_nested_head_only(nested, ds):
    net, state, _ = nested
    r = ju.unlearn("finetune", net, state, ds, forget=3, mode="classifier_only", epochs=1)
    assert tree_equal(r.state.params["body"], state.params["body"])  # bit-identical encoder
    assert not tree_equal(r.state.params["classifier"], state.params["classifier"])
    r = ju.unlearn("random_label", net, state, ds, forget=3, mode="cmf", epochs=1)
    assert tree_equal(r.state.params["classifier"], state.params["classifier"])  # CMF: the head never moves
    assert not tree_equal(r.state.params["body"], state.params["body"])


def test_head_without_bias_evaluates_and_edits(ds):
    net = ju.as_net(NoBias(), ds)
    state, _ = ju.train_model(net, ds, epochs=2, lr=0.05, batch_size=64)
    assert "bias" not in state.params["head"]
    f = ju.features(net, state, ds, forget=3)
    assert "bias" not in f and f["weights"].shape == (10, 32)
    m = ju.evaluate(net, state, ds, forget=3, privacy=False, knn=False)
    assert "nc4_ncc_disagreement" in m["collapse"]
    # NC4 against NumPy: the bias-free head's argmax vs nearest class mean on train features
    h, y = f["train_features"], f["train_labels"]
    means = np.stack([h[y == c].mean(0) for c in range(10)])
    ncc = np.argmin(((h[:, None, :] - means[None]) ** 2).sum(-1), 1)
    np.testing.assert_allclose(m["collapse"]["nc4_ncc_disagreement"], np.mean((h @ f["weights"].T).argmax(1) != ncc),
                               atol=2e-3)
    r = ju.unlearn("classifier_edit", net, state, ds, forget=3)  # the paper's variant needs no bias
    kernel = np.asarray(r.state.params["head"]["kernel"])  # row 3 becomes -mu_3 (gamma 0), the rest stay
    np.testing.assert_allclose(kernel[:, 3], -h[y == 3].mean(0), rtol=1e-5, atol=1e-6)
    assert np.array_equal(np.delete(kernel, 3, 1), np.delete(np.asarray(state.params["head"]["kernel"]), 3, 1))
    with pytest.raises(ValueError, match="needs a head with a bias"):
        ju.unlearn("classifier_edit", net, state, ds, forget=3, variant="centred")


def test_dropout_gets_its_rng_in_training_steps(ds):
    from jaxunlearn import train
    net = ju.as_net(WithDropout(), ds)
    params, bs = net.init(jax.random.key(0), ds.image_shape)
    x = jnp.asarray(ds.train_images[:16])
    key = jax.random.key(5)
    got, _, _ = net.with_rng(key).forward(params, bs, x, True)
    ref, _ = WithDropout().apply({"params": params}, x, train=True, rngs={"dropout": key})
    assert np.array_equal(np.asarray(got), np.asarray(ref))
    off, _, _ = net.with_rng(key).forward(params, bs, x, False)  # inference: deterministic
    assert np.array_equal(np.asarray(off), np.asarray(WithDropout().apply({"params": params}, x)[0]))
    # the train step hands the loss a net with a per-step key: two steps drop different units
    seen = []

    def loss(n, p, b, batch, k, hp, aux):
        logits, _, _ = n.forward(p, b, batch["train"]["images"], True)
        seen.append(n.rng)
        return jnp.mean(logits ** 2), (b, {"loss": jnp.mean(logits ** 2)})

    cfg = train.OptimConfig(schedule="constant")
    step = train.make_step(net, loss, cfg)
    st = train.init_state(net, jax.random.key(0), ds.image_shape, cfg)
    batch = {"train": {"images": x, "labels": jnp.asarray(ds.train_labels[:16])}}
    step(st, batch, jax.random.key(1), {"lr": 0.1}, {})
    step(st, batch, jax.random.key(2), {"lr": 0.1}, {})
    assert len(seen) == 2 and not np.array_equal(jax.random.key_data(seen[0]), jax.random.key_data(seen[1]))
    state, info = ju.train_model(net, ds, epochs=2, lr=0.05, batch_size=64)  # whole runs: no missing-rng error
    r = ju.unlearn("random_label", net, state, ds, forget=3)
    assert np.isfinite(info["test_accuracy"]) and r.state is not None


# ----------------------------------------------------------------------------- train / unlearn / evaluate

def test_train_model_equals_the_cli_trainer(digits):
    from jaxunlearn import runs
    small = digits._replace(train_images=digits.train_images[:500], train_labels=digits.train_labels[:500])
    recipe = runs.recipe_for("digits", "mlp", epochs=2)
    _, ref, _ = runs.train_model(small, "mlp", recipe, seed=3, progress=False)
    state, info = ju.train_model(ju.as_net("mlp", small), small, seed=3, epochs=2, batch_size=64)  # no named recipe
    assert tree_equal(state.params, ref.params)
    named, _ = ju.train_model("mlp", small, seed=3, epochs=2)
    assert tree_equal(named.params, ref.params)
    assert info["epochs_run"] == 2 and info["best_epoch"] in (1, 2)
    assert info["test_accuracy"] == runs.accuracy_of(ju.as_net("mlp", small), ref, small.test_images,
                                                     small.test_labels)


def test_unlearn_equals_the_host_driver_with_the_preset(nested, ds):
    from jaxunlearn.unlearn import core, make_problem
    from jaxunlearn.unlearn import presets
    net, state, _ = nested
    r = ju.unlearn("random_label", net, state, ds, forget=[3, 5], seed=4, hparams={"lr": 0.02})
    method = ju.get_method("random_label")
    hp, st = presets.lookup(ds.name, method.name, "full")
    ref = core.unlearn(method, jax.random.key(4), net, state,
                       make_problem(ds, data_lib.parse_forget([3, 5], 10)), {**hp, "lr": 0.02},
                       method.settings.replace(mode="full", **st))
    assert tree_equal(r.state.params, ref.state.params)
    assert r.spec.classes == (3, 5) and r.mode == "full" and r.preset == "defaults"  # "arrays" has no preset


def test_sample_forgetting_through_the_api(nested, ds):
    from jaxunlearn import train
    net, state, _ = nested
    r = ju.unlearn("finetune", net, state, ds, forget=0.1, seed=2, epochs=1)
    split = data_lib.forget_split(ds, r.spec)
    assert r.spec.fraction == 0.1 and len(split.train_forget) == int(round(0.1 * len(ds.train_labels)))
    m = ju.evaluate(net, r, ds, knn=False, privacy=False, collapse=False)
    logits, _ = train.make_predict(net)(r.state.params, r.state.batch_stats, jnp.asarray(ds.train_images))
    pred = np.asarray(logits).argmax(1)  # accuracy on exactly the forgotten training samples
    f = split.train_forget
    np.testing.assert_allclose(m["full"]["train_forget"], np.mean(pred[f] == ds.train_labels[f]), atol=1e-12)


@pytest.mark.parametrize("kw, message", [
    (dict(hparams={"nope": 1.0}), "nope"),
    (dict(label_pool="everything"), "label_pool"),
    (dict(mode="half"), "unknown mode"),
    (dict(forget=10), "outside the dataset's classes"),
])
def test_unlearn_refuses_bad_options(nested, ds, kw, message):
    net, state, _ = nested
    kw = {"forget": 3, **kw}
    with pytest.raises(ValueError, match=message):
        ju.unlearn("random_label", net, state, ds, **kw)


@pytest.mark.parametrize("kw", [dict(epochs=3), dict(settings={"batch_size": 64})])
def test_method_setup_refuses_a_run_setting_the_method_does_not_use(ds, kw):
    # as the CLI refuses `unlearn --method svd --epochs 3`: SVD trains nothing
    with pytest.raises(ValueError, match=r"svd does not use '(epochs|batch_size)'; it has hyper-parameters alpha_r"):
        ju.method_setup("svd", ds, **kw)
    assert ju.method_setup("random_label", ds, **kw)[2].replace() is not None  # a method that uses them takes them


def test_evaluate_without_relearning_unless_asked(nested, ds):
    from jaxunlearn import train
    net, state, _ = nested
    r = ju.unlearn("random_label", net, state, ds, forget=3, epochs=1)
    m = ju.evaluate(net, r, ds, knn=False, privacy=False, collapse=False)
    assert "relearn" not in m and {"full", "lp", "ncc"} <= set(m)
    # the output head against the module applied by hand
    logits, _ = train.make_predict(net)(r.state.params, r.state.batch_stats, jnp.asarray(ds.test_images))
    pred = np.asarray(logits).argmax(1)
    is3 = ds.test_labels == 3
    np.testing.assert_allclose(m["full"]["forget"], np.mean(pred[is3] == 3), atol=1e-12)
    np.testing.assert_allclose(m["full"]["retain"], np.mean(pred[~is3] == ds.test_labels[~is3]), atol=1e-12)
    m2 = ju.evaluate(net, r.state, ds, forget=3, relearn=(5,), relearn_steps=4, knn=False, privacy=False,
                     collapse=False)
    assert list(m2["relearn"]) == ["5"]
    with pytest.raises(ValueError, match="needs forget="):
        ju.evaluate(net, state, ds)


def test_features_and_analyze_against_sklearn(nested, ds):
    from sklearn.neighbors import NearestCentroid
    net, state, _ = nested
    f = ju.features(net, state, ds, forget=3)
    assert f["train_features"].shape == (len(ds.train_labels), 32) and list(f["forget_classes"]) == [3]
    out = ju.analyze(f, knn=False)
    pred = NearestCentroid().fit(f["train_features"], f["train_labels"]).predict(f["test_features"])
    y = f["test_labels"]
    np.testing.assert_allclose(out["ncc"]["forget"], np.mean(pred[y == 3] == 3), atol=1e-12)
    np.testing.assert_allclose(out["ncc"]["retain"], np.mean(pred[y != 3] == y[y != 3]), atol=1e-12)


def test_sweeps_and_pure_runs_are_exposed(nested, ds):
    net, state, _ = nested
    problem = ju.make_problem(ds, ju.parse_forget([3], 10))
    method, hp, st = ju.method_setup("random_label", ds, epochs=1)
    stacked = ju.sweep_hparams(method, jax.random.key(0), net, state, problem, {"lr": [0.01, 0.02]}, hp, st)
    one = ju.make_unlearn(method, net, st)(jax.random.key(0), state, problem, {**hp, "lr": 0.02})[0]
    np.testing.assert_allclose(np.asarray(stacked.params["body"]["kernel"][1]),
                               np.asarray(one.params["body"]["kernel"]), rtol=1e-5, atol=1e-6)
    seeds = ju.unlearn_seeds(method, [0, 1], net, state, problem, hp, st, strategy="loop")
    assert len(seeds["states"]) == 2


# ----------------------------------------------------------------------------- progress bars

def test_progress_bar_names_the_run_once_and_shows_validation_accuracy(capsys):
    from jaxunlearn import train
    state = ju.TrainState({"w": jnp.ones(2)}, {}, None, jnp.zeros((), jnp.int32))
    scores = iter([0.5, 0.75])

    def run_steps(st, key, data, streams, hparams, aux, epoch, offset, num):
        return st, {"loss": np.full(num, 0.25)}

    train.fit(run_steps, state, jax.random.key(0), {}, {}, {}, {}, epochs=2, steps_per_epoch=3,
              evaluate=lambda s: {"val_accuracy": next(scores)}, progress="train MyMLP")
    err = capsys.readouterr().err.replace("\r", "\n")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all(ln.count("train MyMLP") == 1 for ln in lines)
    assert any("val_accuracy=0.7500" in ln and "loss=0.2500" in ln for ln in lines), err


def test_unlearning_bar_labels_name_the_run_once():
    from jaxunlearn.unlearn import METHODS
    from jaxunlearn.unlearn.core import _bar_name
    for name, method in METHODS.items():
        if method.phases is None:
            continue
        phases = method.phases(method.settings)
        for phase in phases:
            label = _bar_name(f"{name} f3 seed 0", method, phase, method.settings)
            assert label.count(name) == 1 or phase.name.count(name), (name, phase.name, label)
            assert label.startswith(f"{name} f3 seed 0")
            if len(phases) > 1 and phase.name not in name:
                assert label.endswith(f": {phase.name}")  # which phase, when there are several
    assert _bar_name(False, METHODS["scrub"], METHODS["scrub"].phases(METHODS["scrub"].settings)[0],
                     METHODS["scrub"].settings) is False
