"""A multi-layer perceptron on flattened images (fast on CPU; default for ``digits``)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    """ReLU MLP. Features: ``stage{i}`` = hidden layer ``i`` output ``[B, width_i]``."""

    num_classes: int
    widths: Sequence[int] = (256, 128)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        feats = {}
        for i, w in enumerate(self.widths):
            x = nn.relu(nn.Dense(w, name=f"dense{i + 1}")(x))
            feats[f"stage{i + 1}"] = x
        feats["features"] = x
        return nn.Dense(self.num_classes, name="head")(x), feats
