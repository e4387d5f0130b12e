"""ResNet-18 / ResNet-50 with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""

from functools import partial
from typing import Sequence

import flax.linen as nn
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
    """CIFAR-stem ResNet. Features: ``stage1..4`` (pooled), ``features`` ``[B, 512 or 2048]``."""

    num_classes: int
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: type = BasicBlock
    width: int = 64

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
        feats["features"] = feats[f"stage{len(self.stage_sizes)}"]
        return nn.Dense(self.num_classes, name="head")(feats["features"]), feats


def resnet18(num_classes: int) -> ResNet:
    return ResNet(num_classes, (2, 2, 2, 2), BasicBlock)


def resnet50(num_classes: int) -> ResNet:
    return ResNet(num_classes, (3, 4, 6, 3), Bottleneck)
