"""A small pooled CNN, fast enough to train on a 2-core CPU (default for Fashion-MNIST)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def max_pool_2x2(x):
    """``nn.max_pool(x, (2, 2), (2, 2))`` as a reshape + max over ``[B, H, W, C]``.

    Same values; the gradient is elementwise instead of XLA:CPU's variadic reduce-window with
    index tracking (measured cheaper on CPU, benchmarks/README.md). Ties in a window share the
    gradient instead of one element taking it; after a ReLU the tied values are zeros, whose
    gradient is zero, so training is unchanged.
    """
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


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
