"""Neural-collapse metrics ("collapse") of the training features and the classifier
(:func:`jaxunlearn.collapse.collapse_metrics`); the ``retain`` / ``forget`` restrictions are
per class, so they exist for class forgetting only."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from jaxunlearn import collapse as collapse_lib
from jaxunlearn.evaluators.base import ACCURACY_SPLITS, MODEL, ForgetSet, Inputs, is_number, leaves

NAME = "collapse"
NEEDS = ()


def evaluate(inputs: Inputs, forget: ForgetSet, **config) -> dict:
    """``collapse_metrics`` of ``features["features"]`` on every training sample, with the
    classifier's weights and bias when known (``config`` goes to it: ``ddof``, ``rtol``, ...)."""
    f = inputs.features
    return collapse_lib.collapse_metrics(np.asarray(f.train_feats["features"]), np.asarray(inputs.train_labels),
                                         inputs.num_classes, f.weights, f.bias, forget.classes or None, **config)


def columns(value):
    """Top-level numbers on ``(model, all)``; the ``retain`` / ``forget`` dicts on their split;
    another group ``g`` on ``(model, all)`` as ``g_<name>``."""
    for k, v in value.items():
        if isinstance(v, Mapping) and k in ACCURACY_SPLITS:
            for col, x in leaves(v):
                yield MODEL, k, col, x
        elif isinstance(v, Mapping):
            for col, x in leaves(v, f"{k}_"):
                yield MODEL, "all", col, x
        elif is_number(v):
            yield MODEL, "all", k, v
