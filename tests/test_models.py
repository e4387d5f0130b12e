import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import train
from jaxunlearn.models import HEAD, get_model
from jaxunlearn.state import Net

CASES = [
    # name, input shape, feature dim, stage names
    ("mlp", (8, 8, 1), 128, ["stage1", "stage2"]),
    ("cnn", (28, 28, 1), 128, ["stage1", "stage2", "stage3"]),
    ("resnet18", (32, 32, 3), 512, ["stage1", "stage2", "stage3", "stage4"]),
    ("resnet50", (32, 32, 3), 2048, ["stage1", "stage2", "stage3", "stage4"]),
    ("vit_s16", (32, 32, 3), 384, [f"stage{i}" for i in range(1, 13)]),
]


@pytest.mark.parametrize("name,shape,dim,stages", CASES, ids=[c[0] for c in CASES])
def test_model_shapes_and_one_train_step(name, shape, dim, stages):
    net = Net(get_model(name, 10), (0.5,) * shape[-1], (0.25,) * shape[-1])
    cfg = train.OptimConfig(total_steps=10)
    state = train.init_state(net, jax.random.key(0), shape, cfg)
    assert HEAD in state.params and state.params[HEAD]["kernel"].shape == (dim, 10)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, *shape)), jnp.uint8)
    logits, feats, _ = net.forward(state.params, state.batch_stats, x, train=False)
    assert logits.shape == (2, 10)
    assert feats["features"].shape == (2, dim)
    assert sorted(k for k in feats if k != "features") == sorted(stages)
    # the head is linear in the penultimate feature
    head = state.params[HEAD]
    np.testing.assert_allclose(logits, feats["features"] @ head["kernel"] + head["bias"], rtol=1e-4, atol=1e-4)
    step = jax.jit(train.make_step(net, train.supervised_loss, cfg))
    batch = {"train": {"images": x, "labels": jnp.array([1, 2], jnp.int32)}}
    new, metrics = step(state, batch, jax.random.key(1), {"lr": jnp.float32(0.01)}, {})
    assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), new.params, state.params)
    assert any(jax.tree.leaves(changed))


def test_vit_s16_at_224_has_197_tokens():
    net = Net(get_model("vit_s16", 10), (0.5,) * 3, (0.25,) * 3)
    shapes = jax.eval_shape(lambda: net.module.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
    assert shapes["params"]["pos_embed"].shape == (1, 197, 384)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        get_model("nope", 10)


@pytest.mark.parametrize("shape", [(3, 8, 6, 4), (2, 7, 9, 3)])
def test_cnn_max_pool_matches_flax_max_pool_values_and_gradient(shape):
    """The small CNN's pool (custom VJP) equals ``nn.max_pool``: values, and the gradient going
    to the first maximal element of each window, on inputs full of ties and odd sizes."""
    import flax.linen as nn

    from jaxunlearn.models.cnn import max_pool_2x2

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 3, shape).astype(np.float32))  # values 0..2: many ties
    g = jnp.asarray(rng.normal(size=(shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(np.float32))
    y_ref, vjp_ref = jax.vjp(lambda v: nn.max_pool(v, (2, 2), (2, 2)), x)
    y, vjp = jax.vjp(jax.jit(max_pool_2x2), x)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
    (gx,), (gx_ref,) = vjp(g), vjp_ref(g)
    np.testing.assert_array_equal(np.asarray(gx), np.asarray(gx_ref))
    assert float(jnp.sum(gx)) == pytest.approx(float(jnp.sum(g)), rel=1e-6)  # each window passes g once
    batched = jax.vmap(jax.grad(lambda v: jnp.sum(max_pool_2x2(v) * g[0])))(x)
    single = jax.grad(lambda v: jnp.sum(nn.max_pool(v, (2, 2), (2, 2)) * g[0]))(x[1])
    np.testing.assert_array_equal(np.asarray(batched[1]), np.asarray(single))
