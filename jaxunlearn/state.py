"""Training state and the network bundle every step function uses."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.data import normalize


class TrainState(NamedTuple):
    """Everything that changes during training. A pytree; no methods that compute."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array  # int32 scalar


@dataclasses.dataclass(frozen=True)
class Net:
    """A Flax module plus its input normalisation. Static: closed over by jitted functions."""

    module: nn.Module
    mean: Sequence[float]
    std: Sequence[float]

    def init(self, key: jax.Array, image_shape: Sequence[int]):
        """Returns ``(params, batch_stats)`` for inputs of shape ``[1, *image_shape]``."""
        variables = self.module.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
        return variables["params"], variables.get("batch_stats", {})

    def forward(self, params, batch_stats, images: jax.Array, train: bool):
        """uint8 ``images [B, H, W, C]`` -> ``(logits [B, K], features dict, new batch_stats)``.

        With ``train=True`` BatchNorm uses batch statistics and returns updated running
        statistics; with ``train=False`` it uses the running statistics, which come back unchanged.
        """
        x = normalize(images, self.mean, self.std)
        variables = {"params": params, "batch_stats": batch_stats}
        if train and batch_stats:
            (logits, feats), upd = self.module.apply(variables, x, train=True, mutable=["batch_stats"])
            return logits, feats, upd["batch_stats"]
        logits, feats = self.module.apply(variables, x, train=train)
        return logits, feats, batch_stats


def tree_equal(a, b) -> bool:
    """True iff two pytrees have the same structure and bit-identical leaves (host-side)."""
    import numpy as np
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
