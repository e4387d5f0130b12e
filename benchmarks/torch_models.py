"""PyTorch twins of jaxunlearn's models, for the benchmarks only.

Same architecture, parameter count and padding as the Flax modules in
``jaxunlearn/models``: Flax ``padding='SAME'`` pads a stride-2 3x3 convolution by (0, 1)
(TensorFlow convention), so those convolutions get an explicit ``F.pad(x, (0, 1, 0, 1))``
instead of PyTorch's symmetric ``padding=1``. BatchNorm: Flax ``momentum=0.9`` is PyTorch
``momentum=0.1``; eps 1e-5 on both. ``check_equivalence.py`` loads Flax weights into these
modules and compares logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SameConv(nn.Module):
    """``nn.Conv2d`` with Flax/TF ``'SAME'`` padding (asymmetric for stride 2)."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__()
        self.stride = stride
        self.k = k
        # stride 1: symmetric padding equals SAME; stride > 1: explicit SAME padding in forward
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2 if stride == 1 else 0, bias=False)

    def forward(self, x):
        if self.stride != 1:
            h, w = x.shape[-2:]
            ph = max((-(-h // self.stride) - 1) * self.stride + self.k - h, 0)
            pw = max((-(-w // self.stride) - 1) * self.stride + self.k - w, 0)
            if ph or pw:
                x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return self.conv(x)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class SmallCNN(nn.Module):
    """jaxunlearn.models.cnn.SmallCNN: stride-2 stem, Conv-BN-ReLU x3, 2x2 max-pool before stage 3."""

    def __init__(self, num_classes=10, widths=(32, 64, 128), in_ch=1, stem_stride=2):
        super().__init__()
        convs, bns = [], []
        c = in_ch
        for i, w in enumerate(widths):
            convs.append(SameConv(c, w, 3, stem_stride if i == 0 else 1))
            bns.append(bn(w))
            c = w
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(bns)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        for i, (conv, b) in enumerate(zip(self.convs, self.bns)):
            if i > 1:
                x = F.max_pool2d(x, 2, 2)
            x = F.relu(b(conv(x)))
        feats = x.mean(dim=(2, 3))
        return self.head(feats)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = SameConv(cin, cout, 3, stride)
        self.bn1 = bn(cout)
        self.conv2 = SameConv(cout, cout, 3, 1)
        self.bn2 = bn(cout)
        self.proj = None
        if cin != cout or stride != 1:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        sc = x if self.proj is None else self.proj(x)
        return F.relu(sc + y)


class ResNet18(nn.Module):
    """jaxunlearn.models.resnet.resnet18: CIFAR stem (3x3 stride 1, no max-pool), 512-d features."""

    def __init__(self, num_classes=10, in_ch=3, width=64, stages=(2, 2, 2, 2)):
        super().__init__()
        self.stem_conv = SameConv(in_ch, width, 3, 1)
        self.stem_bn = bn(width)
        blocks = []
        c = width
        for s, n in enumerate(stages):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(BasicBlock(c, width * 2 ** s, stride))
                c = width * 2 ** s
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem_conv(x)))
        x = self.blocks(x)
        return self.head(x.mean(dim=(2, 3)))


class MLP(nn.Module):
    """jaxunlearn.models.mlp.MLP: flatten, ReLU hidden layers, linear head."""

    def __init__(self, in_dim, num_classes=10, widths=(256, 128)):
        super().__init__()
        layers, d = [], in_dim
        for w in widths:
            layers += [nn.Linear(d, w), nn.ReLU()]
            d = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, num_classes)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


def get_model(name: str, num_classes: int = 10, image_shape=(28, 28, 1)):
    h, w, c = image_shape
    if name == "cnn":
        return SmallCNN(num_classes, in_ch=c)
    if name == "resnet18":
        return ResNet18(num_classes, in_ch=c)
    if name == "mlp":
        return MLP(h * w * c, num_classes)
    raise ValueError(name)
