import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import checkpoint, parallel, runs, train
from jaxunlearn.models import get_model
from jaxunlearn.state import Net, TrainState, tree_equal
from helpers import StopAfter


def _setup(digits, model="mlp", bs=64):
    net = Net(get_model(model, 10), digits.mean, digits.std)
    spe = train.steps_per_epoch(len(digits.train_labels), bs)
    cfg = train.OptimConfig(total_steps=3 * spe, warmup_steps=spe)
    data = runs.device_data(digits)
    streams = {"train": jnp.arange(len(digits.train_labels), dtype=jnp.int32)}
    return net, cfg, spe, data, streams


def test_schedule_warmup_then_cosine():
    cfg = train.OptimConfig(warmup_steps=10, total_steps=110, final_lr=1e-5)
    lr = lambda s: float(train.learning_rate(cfg, jnp.float32(0.1), jnp.int32(s)))
    assert lr(0) == pytest.approx(0.01) and lr(9) == pytest.approx(0.1)
    assert lr(10) == pytest.approx(0.1) and lr(60) == pytest.approx(0.05, rel=1e-3)
    assert lr(110) == pytest.approx(1e-5, rel=1e-3)


def test_sgd_matches_pytorch_style_formula():
    """One Nesterov SGD step with coupled weight decay, against a hand-written reference."""
    cfg = train.OptimConfig(momentum=0.9, nesterov=True, weight_decay=0.1, schedule="constant")
    tx = train.make_gradient_transform(cfg)
    p = {"w": jnp.array([1.0, -2.0])}
    g = {"w": jnp.array([0.5, 0.25])}
    st = tx.init(p)
    d, st = tx.update(g, st, p)
    d2, _ = tx.update(g, st, p)
    gw = np.array([0.5, 0.25]) + 0.1 * np.array([1.0, -2.0])
    buf1 = gw
    np.testing.assert_allclose(d["w"], gw + 0.9 * buf1, rtol=1e-6)
    buf2 = 0.9 * buf1 + gw
    np.testing.assert_allclose(d2["w"], gw + 0.9 * buf2, rtol=1e-6)


def test_host_loop_equals_scan(digits):
    net, cfg, spe, data, streams = _setup(digits)
    step = train.make_step(net, train.supervised_loss, cfg)
    state = train.init_state(net, jax.random.key(0), digits.image_shape, cfg)
    hp = {"lr": jnp.float32(0.05)}
    outs = []
    for loop in ("host", "scan"):
        rs = train.make_run_steps(step, {"train": 64}, "train", loop=loop)
        s, m = rs(state, jax.random.key(1), data, streams, hp, {}, 0, 0, 5)
        outs.append((s, m))
    for a, b in zip(jax.tree.leaves(outs[0][0].params), jax.tree.leaves(outs[1][0].params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0][1]["loss"], outs[1][1]["loss"], rtol=1e-5)


def test_chunked_run_equals_unchunked(digits):
    net, cfg, spe, data, streams = _setup(digits)
    step = train.make_step(net, train.supervised_loss, cfg)
    rs = train.make_run_steps(step, {"train": 64}, "train")
    state = train.init_state(net, jax.random.key(0), digits.image_shape, cfg)
    hp = {"lr": jnp.float32(0.05)}
    whole = train.fit(rs, state, jax.random.key(1), data, streams, hp, {}, epochs=2, steps_per_epoch=spe)
    chunked = train.fit(rs, state, jax.random.key(1), data, streams, hp, {}, epochs=2, steps_per_epoch=spe,
                        chunk=7)
    assert tree_equal(whole.state.params, chunked.state.params)


def test_sharded_step_equals_single_device(digits):
    assert jax.device_count() >= 4, "conftest sets 4 virtual CPU devices"
    net = Net(get_model("cnn", 10), digits.mean, digits.std)  # has BatchNorm: global batch stats
    cfg = train.OptimConfig(total_steps=10)
    state = train.init_state(net, jax.random.key(0), digits.image_shape, cfg)
    step = train.make_step(net, train.supervised_loss, cfg)
    data = runs.device_data(digits)
    streams = {"train": jnp.arange(256, dtype=jnp.int32)}
    hp = {"lr": jnp.float32(0.05)}
    single = train.make_run_steps(step, {"train": 64}, "train")
    s1, m1 = single(state, jax.random.key(3), data, streams, hp, {}, 0, 0, 2)
    mesh = parallel.make_mesh(4)
    sharded = train.make_run_steps(step, {"train": 64}, "train", parallel.batch_sharding(mesh))
    s4, m4 = sharded(parallel.replicate(state, mesh), jax.random.key(3), parallel.replicate(data, mesh),
                     parallel.replicate(streams, mesh), hp, {}, 0, 0, 2)
    jax.block_until_ready(s4)
    for a, b in zip(jax.tree.leaves((s1.params, s1.batch_stats)), jax.tree.leaves((s4.params, s4.batch_stats))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)


def test_vmapped_seeds_equal_looped_seeds(digits):
    net, cfg, spe, data, streams = _setup(digits)
    cfg = train.OptimConfig(total_steps=2 * spe)
    trainer = jax.jit(train.make_train(net, digits.image_shape, cfg, epochs=2, batch_size=64,
                                       num_train=len(digits.train_labels)))
    keys = jax.random.split(jax.random.key(0), 3)
    hp = {"lr": jnp.float32(0.05)}
    vmapped = jax.jit(jax.vmap(trainer, in_axes=(0, None, None)))(keys, data, hp)
    for i in range(3):
        looped = trainer(keys[i], data, hp)
        for a, b in zip(jax.tree.leaves(looped.params), jax.tree.leaves(vmapped.params)):
            np.testing.assert_allclose(a, b[i], rtol=1e-4, atol=1e-5)


def test_train_rows_as_an_array_equal_an_unpadded_stream_and_padding_is_never_drawn(digits):
    """``make_train`` masks steps only for a :class:`Stream` (padding possible); a plain index
    array runs unmasked, and both give the same model. A stream padded with invalid rows gives
    the model of its valid rows."""
    net, cfg, spe, data, _ = _setup(digits)
    rows = np.arange(0, len(digits.train_labels) - 5, dtype=np.int32)
    trainer = jax.jit(train.make_train(net, digits.image_shape, train.OptimConfig(total_steps=2 * spe), epochs=2,
                                       batch_size=64))
    key, hp = jax.random.key(3), {"lr": jnp.float32(0.05)}
    plain = trainer(key, {**data, "train_rows": jnp.asarray(rows)}, hp)
    stream = trainer(key, {**data, "train_rows": train.as_stream(rows)}, hp)
    padded = trainer(key, {**data, "train_rows": train.pad_stream(rows, len(rows) + 70)}, hp)
    for other in (stream, padded):
        for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(other.params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(plain.step) == int(padded.step) == 2 * (len(rows) // 64)


def test_interrupted_training_resumes_to_same_parameters(digits, tmp_path):
    recipe = runs.recipe_for("digits", "mlp", epochs=3)
    _, uninterrupted, _ = runs.train_model(digits, "mlp", recipe, seed=0, progress=False)

    with pytest.raises(runs.Interrupted, match="resume"):
        runs.train_model(digits, "mlp", recipe, seed=0, workdir=tmp_path, progress=False,
                         checkpoint_every=5, stop=StopAfter(4))
    assert checkpoint.latest_step(tmp_path / "checkpoints") == 25
    _, resumed, _ = runs.train_model(digits, "mlp", recipe, seed=0, workdir=tmp_path, progress=False,
                                     checkpoint_every=5)
    assert tree_equal(uninterrupted.params, resumed.params)


def test_checkpoints_keep_last_k(digits, tmp_path):
    recipe = runs.recipe_for("digits", "mlp", epochs=2)
    runs.train_model(digits, "mlp", recipe, seed=0, workdir=tmp_path, progress=False, checkpoint_every=4, keep=2)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert len(steps) == 2 and steps[-1] == 2 * train.steps_per_epoch(len(digits.train_labels), 64)


def test_divergence_is_detected(digits):
    recipe = runs.recipe_for("digits", "mlp", epochs=1, lr=1e30)
    with pytest.raises(train.Diverged, match="non-finite"):
        runs.train_model(digits, "mlp", recipe, seed=0, progress=False)
