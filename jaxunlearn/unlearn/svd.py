"""SVD unlearning (Kodge, Saha & Roy, "Deep Unlearning: Fast and Efficient Gradient-free Class
Forgetting", TMLR 2024, arXiv:2312.00761): project every layer's weights away from the
forget-class activation subspace. Training-free: no gradient step.

For every ``Dense`` and ``Conv`` layer, with its input activations ``R`` (columns = samples; for
a convolution the patch vectors, laid out like the flattened kernel ``[kh * kw * C_in]``):

1. ``R = U diag(s) V^T``; normalised energies ``e = s^2 / sum(s^2)``;
2. scaled importances ``lambda = alpha * e / ((alpha - 1) * e + 1)`` and the scaled projection
   ``M = U diag(lambda) U^T`` (``alpha_r`` = 1000 for a retain batch, ``alpha_f`` = 30 for a
   forget batch);
3. forget-discriminative space ``I_f = M_f - M_f M_r`` (the forget space minus what it shares
   with the retain space) and ``P = I - I_f``;
4. input-side projection of the kernel: ``W <- P W`` (``W [d_in, d_out]``; PyTorch's
   ``W_t <- W_t P^T``). Biases, BatchNorm and the layer outputs are untouched.

These are the formulas of the authors' released code (``demo.py``/``main.py`` of
``sangamesh-kodge/class_forgetting``, read, not copied); the importance is
``alpha e / ((alpha - 1) e + 1)``, which maps ``e = 1`` to 1. ``U`` and ``s^2`` come from the
eigendecomposition of the Gram matrix ``R R^T`` accumulated over chunks of the batch (the same
``U`` and ``s^2`` as the SVD of ``R``, without holding every patch; the authors subsample at most
10000 patches instead).

Batches: ``samples`` (900) forget samples and ``samples`` retain samples split evenly over the
retain classes, each capped by the data, drawn with the run's key; inference mode
(BatchNorm running statistics). Activations are captured with ``flax.linen.intercept_methods``,
so any model built from ``nn.Dense``/``nn.Conv`` works (``DenseGeneral``, e.g. ViT attention,
is left as is). All projections use the original model's activations.

Defaults ``alpha_r = 100``, ``alpha_f = 30``: the paper's ``alpha_r = 1000`` (kept in
:data:`jaxunlearn.unlearn.configs.CIFAR10`) protects the retain space so strongly that a small
model barely forgets. Measured (retain / forget test accuracy, %): digits MLP class 3 (96.9 /
97.3 original): 100/30 -> 95.3 / 0, 1000/30 -> 96.3 / 83.8, 30/30 -> 90.1 / 0.
Fashion-MNIST small CNN, class 0 (90.8 / 86.6): 100/30 -> 80.7 / 2.5, 300/30 -> 86.5 / 27.3,
1000/30 -> 89.8 / 52.2; class 6 (92.7 / 69.6): 100/30 -> 90.5 / 1.0, 300/30 -> 92.8 / 6.8,
1000/30 -> 93.6 / 26.1. ``alpha_r`` trades retain accuracy against forgetting.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding

from jaxunlearn.data import normalize
from jaxunlearn.unlearn import options as opt
from jaxunlearn.unlearn.core import Method, Settings, padded_batches

HIGHEST = jax.lax.Precision.HIGHEST


def _patches(module: nn.Conv, x):
    """Conv input ``x [B, H, W, C]`` -> patch vectors ``[B * H' * W', kh * kw * C]`` (kernel layout)."""
    if module.feature_group_count != 1:
        raise NotImplementedError("svd: grouped convolutions are not supported")
    ks = tuple(module.kernel_size)
    nd = len(ks)
    strides = module.strides or 1
    strides = (strides,) * nd if isinstance(strides, int) else tuple(strides)
    padding = canonicalize_padding(module.padding, nd)
    if isinstance(padding, str) and padding not in ("SAME", "VALID"):
        raise NotImplementedError(f"svd: padding {padding!r} is not supported")
    dil = lambda d: (d or 1,) * nd if isinstance(d or 1, int) else tuple(d)
    p = jax.lax.conv_general_dilated_patches(
        x, ks, strides, padding, lhs_dilation=dil(module.input_dilation), rhs_dilation=dil(module.kernel_dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)
    c = x.shape[-1]
    p = p.reshape(-1, c, *ks)  # lax orders each patch channel-major: (C, kh, kw)
    return jnp.moveaxis(p, 1, -1).reshape(p.shape[0], -1)  # -> (kh, kw, C), as the kernel


def layer_grams(net, params, batch_stats, images, weights):
    """``{layer path: R R^T}`` of every Dense/Conv input over ``images`` (rows weighted 0/1)."""
    grams = {}

    def interceptor(next_fun, args, kwargs, context):
        m = context.module
        if context.method_name == "__call__" and isinstance(m, (nn.Dense, nn.Conv)):
            x = args[0]
            rows = _patches(m, x) if isinstance(m, nn.Conv) else x.reshape(-1, x.shape[-1])
            w = jnp.repeat(weights, rows.shape[0] // x.shape[0])  # rows are sample-major
            rows = rows.astype(jnp.float32) * w[:, None]
            g = jnp.matmul(rows.T, rows, precision=HIGHEST)
            grams[m.path] = grams[m.path] + g if m.path in grams else g  # a layer applied twice: both inputs
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        net.forward_normalized(params, batch_stats, normalize(images, net.mean, net.std), False)
    return grams


def scaled_projection(gram, alpha):
    """``M = U diag(alpha e / ((alpha - 1) e + 1)) U^T`` from ``R R^T = U diag(s^2) U^T``."""
    s2, u = jnp.linalg.eigh(gram)
    s2 = jnp.maximum(s2, 0.0)
    e = s2 / jnp.maximum(s2.sum(), 1e-30)
    imp = alpha * e / ((alpha - 1.0) * e + 1.0)
    return jnp.matmul(u * imp, u.T, precision=HIGHEST)


def projections(gram_r, gram_f, alpha_r, alpha_f):
    """``P = I - (M_f - M_f M_r)`` for one layer."""
    m_r, m_f = scaled_projection(gram_r, alpha_r), scaled_projection(gram_f, alpha_f)
    return jnp.eye(m_f.shape[0], dtype=m_f.dtype) - (m_f - jnp.matmul(m_f, m_r, precision=HIGHEST))


def sample_batches(key, problem, samples: int):
    """``(retain rows, forget rows)``: ``samples`` of each, retain split evenly over its classes."""
    k_r, k_f = jax.random.split(key)
    labels = np.asarray(problem.data["labels"])
    retain = np.asarray(problem.retain)[np.asarray(jax.random.permutation(k_r, problem.retain.shape[0]))]
    classes = np.unique(labels[retain])
    per_class = max(1, samples // len(classes))
    r = np.concatenate([retain[labels[retain] == c][:per_class] for c in classes])
    f = np.asarray(problem.forget)[np.asarray(jax.random.permutation(k_f, problem.forget.shape[0]))][:samples]
    return jnp.asarray(r, jnp.int32), jnp.asarray(f, jnp.int32)


def grams_of(net, state, images, rows, chunk: int):
    grams_fn = jax.jit(lambda p, bs, x, w: layer_grams(net, p, bs, x, w))
    total = None
    for sel, w in padded_batches(rows, chunk):
        g = grams_fn(state.params, state.batch_stats, images[sel], w)
        total = g if total is None else jax.tree.map(jnp.add, total, g)
    return total


def project_params(params, proj):
    """``W <- P W`` for every layer path in ``proj`` (kernels flattened to ``[d_in, d_out]``)."""
    def edit(tree, path, p):
        if len(path) > 1:
            return {**tree, path[0]: edit(tree[path[0]], path[1:], p)}
        k = tree[path[0]]["kernel"]
        new = jnp.matmul(p, k.reshape(-1, k.shape[-1]).astype(jnp.float32), precision=HIGHEST)
        return {**tree, path[0]: {**tree[path[0]], "kernel": new.reshape(k.shape).astype(k.dtype)}}

    for path, p in proj.items():
        params = edit(params, path, p)
    return params


def apply(key, net, state, problem, hparams, settings):
    retain_rows, forget_rows = sample_batches(key, problem, settings.option("samples", 900))
    chunk = settings.option("chunk", 100)
    g_r = grams_of(net, state, problem.data["images"], retain_rows, chunk)
    g_f = grams_of(net, state, problem.data["images"], forget_rows, chunk)
    proj = {path: projections(g_r[path], g_f[path], hparams["alpha_r"], hparams["alpha_f"]) for path in g_r}
    return state._replace(params=project_params(state.params, proj))


METHOD = Method(
    name="svd",
    summary="training-free: project weights off the forget-class activation subspace",
    hparams={"alpha_r": 100.0, "alpha_f": 30.0},
    options=(opt.HParam("alpha_r", "scaling of the retain-space importances", 0.0, low_open=True),
             opt.HParam("alpha_f", "scaling of the forget-space importances", 0.0, low_open=True),
             opt.Int("samples", 900, "forget samples, and retain samples, whose activations are used", 1),
             opt.Int("chunk", 100, "samples per activation batch", 1)),
    settings=Settings(options=(("samples", 900), ("chunk", 100))),
    apply=apply,
    classifier_loss=False,
    host_side="samples the retain/forget rows and their classes on the host (NumPy)",
)
