"""A small pooled CNN, fast enough to train on a 2-core CPU (default for Fashion-MNIST)."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _pool_windows(x):
    """``[..., H, W, C]`` -> ``[..., H//2, 2, W//2, 2, C]`` (an odd last row/column is dropped)."""
    *lead, h, w, c = x.shape
    return x[..., : h // 2 * 2, : w // 2 * 2, :].reshape(*lead, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def max_pool_2x2(x):
    """``nn.max_pool(x, (2, 2), (2, 2))`` over ``[..., H, W, C]``: the same values and gradient.

    Forward: a reshape + max. Backward (custom VJP): each window's gradient goes to its first
    maximal element in row-major order, as in ``nn.max_pool`` and PyTorch, computed with
    elementwise selects. XLA:CPU's own gradients are slower: ``nn.max_pool``'s variadic
    reduce-window with index tracking, and ``jnp.max``'s (which splits the gradient among
    ties) tie-count reduction, which XLA fuses with the next convolution's input gradient into
    a YNNPACK kernel ~2x slower than that convolution alone (benchmarks/README.md).
    """
    return jnp.max(_pool_windows(x), axis=(-4, -2))


def _max_pool_fwd(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _max_pool_bwd(res, g):
    x, y = res
    xw = _pool_windows(x)
    taken = jnp.zeros(y.shape, bool)
    rows = []
    for i in range(2):
        cols = []
        for j in range(2):
            first = (xw[..., i, :, j, :] == y) & ~taken
            taken = taken | first
            cols.append(jnp.where(first, g, jnp.zeros_like(g)))
        rows.append(jnp.stack(cols, axis=-2))  # [..., H//2, W//2, 2, C]
    *lead, h, w, c = x.shape
    gx = jnp.stack(rows, axis=-4).reshape(*lead, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(gx, [(0, 0)] * len(lead) + [(0, h % 2), (0, w % 2), (0, 0)]),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


class SmallCNN(nn.Module):
    """Conv(3x3)-BN-ReLU stages, global average pool, linear head.

    The first convolution has stride ``stem_stride`` and stages after the second are preceded
    by a 2x2 max-pool (28x28 input: 14x14, 14x14, 7x7). The stride-2 stem made a train step
    ~3x faster on the 2-core CPU than a stride-1 stem at full resolution, for about the same
    Fashion-MNIST accuracy.

    Features: ``stage{i}`` = stage ``i`` output, average-pooled ``[B, C_i]``; ``features`` =
    the pooled last stage ``[B, widths[-1]]``.
    """

    num_classes: int
    widths: Sequence[int] = (32, 64, 128)
    stem_stride: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        feats = {}
        for i, w in enumerate(self.widths):
            if i > 1:
                x = max_pool_2x2(x)
            x = nn.Conv(w, (3, 3), strides=self.stem_stride if i == 0 else 1, use_bias=False,
                        name=f"conv{i + 1}")(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i + 1}")(x)
            x = nn.relu(x)
            feats[f"stage{i + 1}"] = jnp.mean(x, axis=(1, 2))
        feats["features"] = feats[f"stage{len(self.widths)}"]
        return nn.Dense(self.num_classes, name="head")(feats["features"]), feats
