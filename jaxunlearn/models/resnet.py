"""ResNet-18 / ResNet-50 with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""

from functools import partial
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    filters: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        bn = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        y = nn.Conv(self.filters, (3, 3), self.strides, use_bias=False)(x)
        y = nn.relu(bn()(y))
        y = nn.Conv(self.filters, (3, 3), use_bias=False)(y)
        y = bn()(y)
        if x.shape[-1] != self.filters or self.strides != 1:
            x = bn()(nn.Conv(self.filters, (1, 1), self.strides, use_bias=False)(x))
        return nn.relu(x + y)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck with expansion 4."""

    filters: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        bn = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        y = nn.relu(bn()(nn.Conv(self.filters, (1, 1), use_bias=False)(x)))
        y = nn.relu(bn()(nn.Conv(self.filters, (3, 3), self.strides, use_bias=False)(y)))
        y = bn()(nn.Conv(4 * self.filters, (1, 1), use_bias=False)(y))
        if x.shape[-1] != 4 * self.filters or self.strides != 1:
            x = bn()(nn.Conv(4 * self.filters, (1, 1), self.strides, use_bias=False)(x))
        return nn.relu(x + y)


class ResNet(nn.Module):
    """CIFAR-stem ResNet. Features: ``stage1..4`` (pooled), ``features`` ``[B, 512 or 2048]``.

    ``log_softmax_features`` (default False) reproduces a quirk of the CMF authors' code
    (ycgao1/CMF_Unlearning ``models/resnet.py:191, 225-226``): their ResNet ends in
    ``log_softmax``, and for CMF they replace ``fc`` by the identity (``unlearn/cmf_weights.py:
    117-120``), so the CMF head sees ``f - logsumexp(f)`` of the pooled feature ``f`` instead of
    ``f``. With the flag on, ``features`` is that ``log_softmax(f)`` ``[B, D]``, so everything
    that reads ``features`` (the CMF head and its class means, probes and collapse metrics)
    sees it; the linear ``head`` still reads ``f`` (``stage4`` also stays ``f``), so the logits
    and the parameters are unchanged and a checkpoint trained without the flag loads with it.
    The paper's text (the CMF head on ``f``) is the default.
    """

    num_classes: int
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: type = BasicBlock
    width: int = 64
    log_softmax_features: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.width, (3, 3), use_bias=False, name="stem_conv")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name="stem_bn")(x))
        feats = {}
        for s, n_blocks in enumerate(self.stage_sizes):
            for b in range(n_blocks):
                strides = 2 if s > 0 and b == 0 else 1
                x = self.block(self.width * 2 ** s, strides, name=f"stage{s + 1}_block{b + 1}")(x, train)
            feats[f"stage{s + 1}"] = jnp.mean(x, axis=(1, 2))
        pooled = feats[f"stage{len(self.stage_sizes)}"]
        feats["features"] = (pooled - jax.nn.logsumexp(pooled, axis=-1, keepdims=True)
                             if self.log_softmax_features else pooled)
        return nn.Dense(self.num_classes, name="head")(pooled), feats


def resnet18(num_classes: int, log_softmax_features: bool = False) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2); ``log_softmax_features``: the authors' quirk (see ResNet)."""
    return ResNet(num_classes, (2, 2, 2, 2), BasicBlock, log_softmax_features=log_softmax_features)


def resnet50(num_classes: int, log_softmax_features: bool = False) -> ResNet:
    """ResNet-50 (bottlenecks 3-4-6-3, 2048-d features); ``log_softmax_features`` as for ResNet."""
    return ResNet(num_classes, (3, 4, 6, 3), Bottleneck, log_softmax_features=log_softmax_features)
