"""Representation similarity: linear CKA (Kornblith et al. 2019).

``CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)`` with ``X_c``, ``Y_c``
the column-centred feature matrices (rows are the same N samples). It is 1 for
``Y = a X Q + 1 t^T`` (isotropic scaling, orthogonal transform, translation) and in [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

_HI = jax.lax.Precision.HIGHEST


def _centre_unit(x):
    x = jnp.asarray(x, jnp.float32)
    x = x - jnp.mean(x, axis=0)
    return x / jnp.linalg.norm(x)  # scale-free; keeps the products O(1) in float32


@jax.jit
def linear_cka(x, y) -> jax.Array:
    """Linear CKA between two representations of the same samples.

    The Frobenius norms are taken in the cheaper of the feature space (``D x D`` products)
    and the sample space (``N x N`` Gram matrices); both give the same value.

    Args:
      x: ``[N, D1]`` features.
      y: ``[N, D2]`` features.

    Returns:
      float32 scalar in [0, 1] (NaN if either input is constant over samples).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same samples, got {x.shape} and {y.shape}")
    xc, yc = _centre_unit(x), _centre_unit(y)
    n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    if n < max(d1, d2):
        kx = jnp.matmul(xc, xc.T, precision=_HI)
        ky = jnp.matmul(yc, yc.T, precision=_HI)
        return jnp.sum(kx * ky) / (jnp.linalg.norm(kx) * jnp.linalg.norm(ky))
    cross = jnp.matmul(yc.T, xc, precision=_HI)
    sx = jnp.matmul(xc.T, xc, precision=_HI)
    sy = jnp.matmul(yc.T, yc, precision=_HI)
    return jnp.sum(cross * cross) / (jnp.linalg.norm(sx) * jnp.linalg.norm(sy))


def cka_retain_forget(feats_a, feats_b, labels, forget_classes: Sequence[int] | np.ndarray
                      ) -> dict:
    """Linear CKA between two models' features, on all / retain-class / forget-class samples.

    Typical use: ``feats_a`` from the original model and ``feats_b`` from the unlearned
    model on the same inputs; a forget CKA well below the retain CKA means the forget
    classes' representation changed.

    Args:
      feats_a: ``[N, D1]`` features of model A.
      feats_b: ``[N, D2]`` features of model B on the same samples.
      labels: ``[N]`` int labels.
      forget_classes: ``[F]`` class ids.

    Returns:
      ``{"all": float, "retain": float | None, "forget": float | None}``; a subset with
      fewer than 2 samples gives ``None``.
    """
    a = np.asarray(feats_a, np.float32)
    b = np.asarray(feats_b, np.float32)
    y = np.asarray(labels).reshape(-1)
    if a.shape[0] != b.shape[0] or a.shape[0] != y.shape[0]:
        raise ValueError(f"feats_a {a.shape}, feats_b {b.shape}, labels {y.shape}: "
                         "the sample counts differ")
    is_forget = np.isin(y, np.asarray(forget_classes, dtype=np.int64).reshape(-1))

    def cka(mask):
        if mask.sum() < 2:
            return None
        v = float(linear_cka(a[mask], b[mask]))
        return v if np.isfinite(v) else None

    return {"all": cka(np.ones_like(is_forget)), "retain": cka(~is_forget),
            "forget": cka(is_forget)}
