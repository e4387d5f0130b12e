"""Nearest class centre ("ncc"): class means of the fitted training features, nearest mean
(Euclidean); fitted as the linear probe is (:mod:`jaxunlearn.evaluators.probe`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import heads
from jaxunlearn.evaluators.base import ForgetSet, Inputs, accuracy_columns, fit_and_queries, head_accuracy

NAME = "ncc"
NEEDS = ()


def evaluate(inputs: Inputs, forget: ForgetSet, feature: str = "features") -> dict:
    """NCC accuracy per split (as :func:`jaxunlearn.evaluators.probe.evaluate`)."""
    fit_x, fit_y, queries = fit_and_queries(inputs, forget, feature)
    means = heads.ncc_fit(jnp.asarray(fit_x, jnp.float32), jnp.asarray(fit_y, jnp.int32), inputs.num_classes)
    pred = np.asarray(jax.block_until_ready(heads.ncc_predict(means, jnp.asarray(queries, jnp.float32))))
    return head_accuracy(pred, inputs, forget)


def columns(value):
    return accuracy_columns(NAME, value)
