"""Flax models. Every model maps ``images [B, H, W, C] -> (logits [B, K], features)``.

``features`` is a dict: ``"features"`` is the penultimate feature ``[B, D]`` (the input of
the last layer, which is always the submodule named ``"head"``), and ``"stage1"``,
``"stage2"``, ... are the globally average-pooled outputs ``[B, C_s]`` of each stage, for
layer-wise probes. ``train`` switches BatchNorm to batch statistics (and dropout on).

A user's own Flax module follows the same contract, relaxed (:class:`jaxunlearn.state.Net`,
:func:`jaxunlearn.api.as_net`): its head may sit at another path in ``params`` (``head_path``)
and have no bias, float inputs may skip the uint8 normalisation (``mean = std = None``), and
``nn.Dropout`` gets its ``"dropout"`` rng in training steps.
"""

from jaxunlearn.models.cnn import SmallCNN
from jaxunlearn.models.mlp import MLP
from jaxunlearn.models.resnet import ResNet, resnet18, resnet50
from jaxunlearn.models.vit import ViT, vit_s16

MODELS = {
    "mlp": lambda k: MLP(num_classes=k),
    "cnn": lambda k: SmallCNN(num_classes=k),
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vit_s16": vit_s16,
}
HEAD = "head"  # name of the last (classifier) layer in every model


def get_model(name: str, num_classes: int):
    """Returns the Flax module ``name`` with ``num_classes`` outputs.

    Raises:
      ValueError: unknown model name.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](num_classes)


__all__ = ["MLP", "SmallCNN", "ResNet", "ViT", "resnet18", "resnet50", "vit_s16", "MODELS", "HEAD",
           "get_model"]
