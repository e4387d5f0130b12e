"""Class-mean-feature (CMF) classifiers: weights from features, logits, CMF features.

Given encoder features ``f`` (the input of the last layer), following Gao et al. (2026):

1. ``z = f / ||f||`` per sample;
2. class means ``m_c`` = mean of ``z`` over training samples of class ``c`` (true labels,
   every class including the forget classes);
3. global mean ``mu`` = the sample mean of ``z``;
4. weight rows ``W_c = (m_c - mu) / ||m_c - mu||``; no bias. ``W`` is a buffer, never a
   trainable parameter;
5. ``logits = T * normalize(z - mu) @ W^T`` with temperature ``T`` (default 1).

All functions are pure and jittable; float32 with highest matmul precision.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST
EPS = 1e-12


class CMFHead(NamedTuple):
    """CMF classifier buffers: ``weights [K, D]`` (unit rows), ``center [D]``, ``temperature []``."""

    weights: jax.Array
    center: jax.Array
    temperature: jax.Array


def _unit(x, axis=-1):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), EPS)


def cmf_head(features: jax.Array, labels: jax.Array, num_classes: int, temperature: float = 1.0,
             sample_weights: jax.Array | None = None) -> CMFHead:
    """CMF weights from features.

    Args:
      features: ``[N, D]`` penultimate features of the training set.
      labels: ``[N]`` true labels.
      num_classes: ``K``.
      temperature: logit scale ``T``.
      sample_weights: optional ``[N]`` 0/1 weights (e.g. to drop padding); default all ones.

    Returns:
      :class:`CMFHead` with ``weights [K, D]``; a class without samples gets a zero row.
    """
    z = _unit(features.astype(jnp.float32))
    w = jnp.ones(z.shape[0], jnp.float32) if sample_weights is None else sample_weights.astype(jnp.float32)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * w[:, None]  # [N, K]
    counts = onehot.sum(0)
    means = jnp.matmul(onehot.T, z, precision=HIGHEST) / jnp.maximum(counts, 1.0)[:, None]
    mu = (w[:, None] * z).sum(0) / jnp.maximum(w.sum(), 1.0)
    rows = _unit(means - mu)
    rows = jnp.where((counts > 0)[:, None], rows, 0.0)
    return CMFHead(rows, mu, jnp.asarray(temperature, jnp.float32))


def cmf_features(head: CMFHead, features: jax.Array) -> jax.Array:
    """The CMF classifier's input: ``normalize(normalize(f) - mu)``, ``[N, D]``."""
    return _unit(_unit(features.astype(jnp.float32)) - head.center)


def cmf_logits(head: CMFHead, features: jax.Array) -> jax.Array:
    """``[N, D]`` features -> ``[N, K]`` logits ``T * cmf_features(f) @ W^T``."""
    return head.temperature * jnp.matmul(cmf_features(head, features), head.weights.T, precision=HIGHEST)
