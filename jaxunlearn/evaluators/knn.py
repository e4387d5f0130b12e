"""k nearest neighbours ("knn"): cosine k-NN majority vote over the fitted training features
(fitted as the linear probe is, :mod:`jaxunlearn.evaluators.probe`). For sample forgetting the
``train_retain`` split queries samples that are their own neighbours (in-sample)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import heads
from jaxunlearn.evaluators.base import ForgetSet, Inputs, accuracy_columns, fit_and_queries, head_accuracy

NAME = "knn"
NEEDS = ()


def evaluate(inputs: Inputs, forget: ForgetSet, k: int = 5, metric: str = "cosine",
             feature: str = "features") -> dict:
    """k-NN accuracy per split (``k`` neighbours, ``metric`` ``"cosine"`` or ``"euclidean"``)."""
    fit_x, fit_y, queries = fit_and_queries(inputs, forget, feature)
    pred = heads.knn_predict(jnp.asarray(fit_x, jnp.float32), jnp.asarray(fit_y, jnp.int32),
                             jnp.asarray(queries, jnp.float32), k, metric, num_classes=inputs.num_classes)
    return head_accuracy(np.asarray(jax.block_until_ready(pred)), inputs, forget)


def columns(value):
    return accuracy_columns(NAME, value)
