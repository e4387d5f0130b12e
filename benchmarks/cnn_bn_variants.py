"""Attempts at a cheaper BatchNorm for the small CNN's one-device CPU train step.

    .venv/bin/python benchmarks/cnn_bn_variants.py [--rounds 6] [--steps 5] [--parts 16]

``cnn_ablation.py`` shows Flax's BatchNorm taking ~28 % of the step. Each variant here is a
drop-in ``nn.BatchNorm`` (same parameters ``scale``/``bias``, same ``batch_stats``
``mean``/``var``, biased batch variance, momentum update, eps 1e-5), patched into
``models/cnn.py`` while the step is traced, timed against the library in interleaved rounds
by ``cnn_ablation.main``:

* ``bn=matmul stats``: the per-channel mean and mean square as one GEMM, ``ones[1, M] @
  [x, x*x]`` over ``x`` reshaped to ``[M = B*H*W, C]`` (Eigen's threaded GEMM instead of a
  column reduction); the gradient by JAX;
* ``bn=matmul stats + custom VJP``: the same statistics, and the batch-norm backward written
  out (``dx = scale * inv / M * (M g - sum g - xhat * sum(g xhat))``), its two channel sums
  as one GEMM;
* ``bn=2-stage sums``: each channel sum in two stages, ``[M, C] -> [P, M/P, C] -> [P, C] ->
  [C]``, so the first stage has ``P * C`` outputs to spread over threads; the gradient by JAX;
* ``bn=2-stage sums + custom VJP``: the written-out backward with two-stage sums.

Each variant is first checked equal to ``nn.BatchNorm`` (``check_equal_to_flax``). Writes
``/tmp/cnn_bn_variants.json`` unless ``--out`` is given (the figures go into
``attempts.json`` by hand, as a note, with this command).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import types

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cnn_ablation  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

EPS = 1e-5


def _rows(x):
    """``[..., C]`` -> ``[M, C]``."""
    return x.reshape(-1, x.shape[-1])


def matmul_sums(a):
    """Per-channel sums of ``[..., C]`` as one GEMM: ``[C]``."""
    a2 = _rows(a)
    return (jnp.ones((1, a2.shape[0]), a.dtype) @ a2)[0]


def two_stage_sums(a, parts):
    """Per-channel sums of ``[..., C]`` in two stages through ``[parts, C]``: ``[C]``."""
    a2 = _rows(a)
    m, c = a2.shape
    p = parts if m % parts == 0 else 1
    return a2.reshape(p, m // p, c).sum(1).sum(0)


def make_batch_norm(channel_sums, custom_vjp):
    """A ``nn.BatchNorm`` stand-in whose channel sums are ``channel_sums([..., C]) -> [C]``."""

    def stats(x):
        m = x.size // x.shape[-1]
        both = channel_sums(jnp.concatenate([x, x * x], axis=-1)) / m
        mean, mean_sq = jnp.split(both, 2)
        return mean, jnp.maximum(mean_sq - mean * mean, 0.0)

    @jax.custom_vjp
    def normalise(x, scale, bias):
        mean, var = stats(x)
        return (x - mean) * (jax.lax.rsqrt(var + EPS) * scale) + bias

    def normalise_fwd(x, scale, bias):
        mean, var = stats(x)
        inv = jax.lax.rsqrt(var + EPS)
        return (x - mean) * (inv * scale) + bias, (x, mean, inv, scale)

    def normalise_bwd(res, g):
        x, mean, inv, scale = res
        m = x.size // x.shape[-1]
        xhat = (x - mean) * inv
        sums = channel_sums(jnp.concatenate([g, g * xhat], axis=-1))
        d_bias, d_scale = jnp.split(sums, 2)
        return (scale * inv / m) * (m * g - d_bias - xhat * d_scale), d_scale, d_bias

    normalise.defvjp(normalise_fwd, normalise_bwd)

    class BatchNorm(nn.Module):
        use_running_average: bool = False
        momentum: float = 0.9

        @nn.compact
        def __call__(self, x):
            c = x.shape[-1]
            ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
            ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
            scale = self.param("scale", nn.initializers.ones, (c,))
            bias = self.param("bias", nn.initializers.zeros, (c,))
            if self.use_running_average:
                return (x - ra_mean.value) * (jax.lax.rsqrt(ra_var.value + EPS) * scale) + bias
            mean, var = stats(jax.lax.stop_gradient(x))
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
            if custom_vjp:
                return normalise(x, scale, bias)
            mean, var = stats(x)
            return (x - mean) * (jax.lax.rsqrt(var + EPS) * scale) + bias

    return BatchNorm


def check_equal_to_flax(bn, atol=2e-4):
    """Raises unless ``bn`` gives ``nn.BatchNorm``'s outputs, parameter and input gradients and
    running statistics (training mode) on a random ``[8, 6, 6, 5]`` batch, within ``atol``."""
    import numpy as np
    x = jax.random.normal(jax.random.key(0), (8, 6, 6, 5)) * 3 + 1

    def run(module):
        v = module.init(jax.random.key(1), x)

        def loss(params, x):
            y, upd = module.apply({"params": params, "batch_stats": v["batch_stats"]}, x, mutable=["batch_stats"])
            return jnp.sum(jnp.sin(y)), upd
        (value, upd), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(v["params"], x)
        return value, grads, upd

    want, got = run(nn.BatchNorm(use_running_average=False, momentum=0.9)), run(bn())
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-4)


def _with(bn):
    return {"nn": types.SimpleNamespace(**{**vars(nn), "BatchNorm": bn})}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--parts", type=int, default=16, help="first-stage rows of the 2-stage sums")
    p.add_argument("--out", default="/tmp/cnn_bn_variants.json")
    a, rest = p.parse_known_args()

    def two_stage(t):
        return two_stage_sums(t, a.parts)

    variants = {
        "bn=matmul stats": make_batch_norm(matmul_sums, False),
        "bn=matmul stats + custom VJP": make_batch_norm(matmul_sums, True),
        "bn=2-stage sums": make_batch_norm(two_stage, False),
        "bn=2-stage sums + custom VJP": make_batch_norm(two_stage, True),
    }
    for bn in variants.values():  # the same function as Flax's, or the timing means nothing
        check_equal_to_flax(bn)
    cnn_ablation.VARIANTS = {"library": {}, **{k: _with(bn) for k, bn in variants.items()},
                             "no BatchNorm": cnn_ablation.VARIANTS["no BatchNorm"]}
    out = pathlib.Path(a.out)
    cnn_ablation.HERE = out.parent
    cnn_ablation.OUT_NAME = out.name
    cnn_ablation.SCRIPT = "benchmarks/cnn_bn_variants.py" + "".join(
        f" {k} {v}" for k, v in (("--parts", a.parts), ("--out", a.out)))
    sys.argv = [sys.argv[0]] + rest
    cnn_ablation.main()


if __name__ == "__main__":
    main()
