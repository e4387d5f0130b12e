"""Linear probes ("lp" on the classifier's input, "layerwise" on every stage's output).

Protocol (PAPER.md §5): a fresh linear layer with bias is fitted to frozen features with true
labels, on every training sample for class forgetting, on the retain training samples for
sample forgetting (the forgotten samples are then held out from the probe, as from a retrained
model, and scored as a split of their own: ``train_forget``).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import heads
from jaxunlearn.evaluators.base import ForgetSet, Inputs, accuracy_columns, fit_and_queries, head_accuracy

NAME = "lp"
NEEDS = ()


def probe_predict(fit_x, fit_y, queries, num_classes: int, probe: str = "fast", key=None,
                  probe_epochs: int | None = None) -> np.ndarray:
    """Predicted classes ``[Q]`` of a probe fitted on ``fit_x [n, D]``, ``fit_y [n]``.

    ``probe``: ``"fast"`` (:func:`jaxunlearn.heads.linear_probe_fit`) or a key of
    :data:`jaxunlearn.heads.PROBE_PROTOCOLS` (``"sgd"``, the authors' ``"paper-*"``).
    """
    if probe == "none" or probe not in heads.PROBES:
        raise ValueError(f"unknown probe {probe!r}; use one of {', '.join(p for p in heads.PROBES if p != 'none')}")
    if probe_epochs is not None and probe_epochs < 1:
        raise ValueError(f"probe_epochs must be >= 1, got {probe_epochs}")
    x, y = jnp.asarray(fit_x, jnp.float32), jnp.asarray(fit_y, jnp.int32)
    if probe == "fast":
        params = heads.linear_probe_fit(x, y, num_classes)
    else:
        proto = heads.PROBE_PROTOCOLS[probe]
        if probe_epochs is not None:
            proto = proto._replace(epochs=int(probe_epochs))
        params = heads.linear_probe_sgd(x, y, num_classes, key=key, **proto._asdict())
    pred = jnp.argmax(heads.linear_probe_predict(params, jnp.asarray(queries, jnp.float32)), axis=-1)
    return np.asarray(jax.block_until_ready(pred))


def evaluate(inputs: Inputs, forget: ForgetSet, probe: str = "fast", key=None, probe_epochs: int | None = None,
             feature: str = "features") -> dict:
    """Linear-probe accuracy per split on ``features[feature]``.

    Args:
      probe: ``"fast"``, ``"sgd"`` or ``"paper-<dataset>"``; key: PRNG key of an SGD probe;
      probe_epochs: overrides the SGD protocol's epochs.

    Returns:
      ``{"retain", "forget", "all"}`` (test) and, for sample forgetting, ``{"train_retain",
      "train_forget"}`` (fractions; None for an empty subset).
    """
    fit_x, fit_y, queries = fit_and_queries(inputs, forget, feature)
    pred = probe_predict(fit_x, fit_y, queries, inputs.num_classes, probe, key, probe_epochs)
    return head_accuracy(pred, inputs, forget)


def columns(value):
    return accuracy_columns(NAME, value)


# ----------------------------------------------------------------------------- layer-wise

LAYERWISE = "layerwise"


def stage_order(names) -> list[str]:
    """Stage names in network order, ``"features"`` last."""
    return sorted(names, key=lambda n: (n == "features", len(n), n))


def evaluate_layerwise(inputs: Inputs, forget: ForgetSet, probe: str = "fast") -> dict:
    """:func:`evaluate` on every entry of the feature dict: ``{stage: accuracy dict}``."""
    return {name: evaluate(inputs, forget, probe=probe, feature=name)
            for name in stage_order(inputs.features.train_feats)}


def layerwise_columns(value):
    for stage, d in value.items():  # head lp_<stage>, "accuracy" per split
        if isinstance(d, Mapping):
            for head, split, col, x in accuracy_columns(f"lp_{stage}", d):
                if col == "accuracy":
                    yield head, split, col, x
