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
    """A Flax module plus its input normalisation. Static: closed over by jitted functions.

    Attributes:
      module: the Flax model, ``x -> (logits, features)``.
      mean, std: per-channel normalisation of uint8 inputs.
      bn_frozen: BatchNorm always uses running statistics (classifier-only unlearning, teachers).
      head_buffers: if set, a :class:`jaxunlearn.cmf.CMFHead` (arrays) that replaces the linear
        head: logits are the CMF logits of the penultimate features. Set inside traced code
        with :meth:`with_head`; it is data, never a trainable parameter.
    """

    module: nn.Module
    mean: Sequence[float]
    std: Sequence[float]
    bn_frozen: bool = False
    head_buffers: Any = None

    def init(self, key: jax.Array, image_shape: Sequence[int]):
        """Returns ``(params, batch_stats)`` for inputs of shape ``[1, *image_shape]``."""
        variables = self.module.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
        return variables["params"], variables.get("batch_stats", {})

    def with_head(self, head_buffers) -> "Net":
        return dataclasses.replace(self, head_buffers=head_buffers)

    def frozen_bn(self) -> "Net":
        return dataclasses.replace(self, bn_frozen=True)

    def forward(self, params, batch_stats, images: jax.Array, train: bool):
        """uint8 ``images [B, H, W, C]`` -> ``(logits [B, K], features dict, new batch_stats)``."""
        return self.forward_normalized(params, batch_stats, normalize(images, self.mean, self.std), train)

    def forward_normalized(self, params, batch_stats, x: jax.Array, train: bool):
        """Like :meth:`forward` for already normalised float inputs ``x [B, H, W, C]``.

        With ``train=True`` (and BatchNorm not frozen) BatchNorm uses batch statistics and
        returns updated running statistics; otherwise it uses the running statistics, which
        come back unchanged.
        """
        variables = {"params": params, "batch_stats": batch_stats}
        train_bn = train and not self.bn_frozen
        if train_bn and batch_stats:
            (logits, feats), upd = self.module.apply(variables, x, train=True, mutable=["batch_stats"])
            new_bs = upd["batch_stats"]
        else:
            logits, feats = self.module.apply(variables, x, train=train_bn)
            new_bs = batch_stats
        if self.head_buffers is not None:
            from jaxunlearn import cmf
            logits = cmf.cmf_logits(self.head_buffers, feats["features"])
        return logits, feats, new_bs


def tree_equal(a, b) -> bool:
    """True iff two pytrees have the same structure and bit-identical leaves (host-side)."""
    import numpy as np
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
