"""Neural-collapse metrics (NC1-NC4) and classifier misalignment, as pure functions.

Notation (every function below uses it; see docs/metrics.md for sources):

* ``h_i`` ``[D]``: the feature of sample i, ``y_i`` its label; N samples, K classes.
* ``mu_c`` = mean of ``h_i`` over class c; ``N_c`` its count.
* ``mu_G`` = the **sample** mean of all ``h_i`` (the default), unless a variant says
  otherwise; ``M`` ``[K, D]`` = the centred class means ``mu_c - mu_G`` as rows.
* ``S_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` (pooled within-class scatter).
* ``S_B = (1/K) sum_c (mu_c - mu_G)(mu_c - mu_G)^T = M^T M / K`` (between-class scatter).
* ``W`` ``[K, D]``: last-layer weights (row c is class c), ``b`` ``[K]`` the bias.

The CMF authors' conventions (per-class averaged S_W, subsets centred at the all-sample mean,
forget NC1 of the forget classes alone, Zhu's NC3, their CDNV, ``Delta``) are separate
functions under their own names (:func:`authors_metrics` collects them); the defaults above
do not change.

All means and products run in float32 with ``Precision.HIGHEST``. Every class in
``[0, K)`` must have at least one sample (:func:`collapse_metrics` checks it; the jitted
functions would give NaN).

``tr(S_W S_B^+)`` is evaluated without forming a D x D matrix: with the thin SVD
``M = U diag(s) V^T``, ``S_B^+ = K V diag(1/s^2) V^T`` over the singular values with
``s_j > rtol * s_max`` (S_B has rank <= K - 1, so the null direction must be cut), hence

    NC1 = tr(S_W S_B^+) / K = (1/N) sum_i sum_j ((h_i - mu_{y_i}) . v_j)^2 / s_j^2.

The default ``rtol`` is ``max(K, D, 100) * eps(float32)`` (about 1.2e-5 or more).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.heads import ncc_predict

_HI = jax.lax.Precision.HIGHEST


def _mm(a, b):
    return jnp.matmul(a, b, precision=_HI)


def default_rtol(num_classes: int, dim: int) -> float:
    """Relative singular-value cut-off for ``S_B^+``: ``max(K, D, 100) * eps(float32)``."""
    return float(max(num_classes, dim, 100) * np.finfo(np.float32).eps)


# ----------------------------------------------------------------------------- statistics


def class_means(features, labels, num_classes: int):
    """Class means and counts.

    Args:
      features: ``[N, D]`` features.
      labels: ``[N]`` int labels in ``[0, K)``.
      num_classes: K.

    Returns:
      ``(means [K, D] float32, counts [K] float32)``; an empty class has a NaN row.
    """
    h = jnp.asarray(features, jnp.float32)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    counts = jnp.sum(onehot, axis=0)
    return _mm(onehot.T, h) / counts[:, None], counts


def _l2_rows(x):
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))


def _std(x, ddof):
    n = x.size
    return jnp.sqrt(jnp.sum(jnp.square(x - jnp.mean(x))) / (n - ddof))


def _nc1_per_sample(h, labels, means, center, rtol):
    """Per-sample terms q_i with NC1 = mean_i q_i (see the module docstring)."""
    m = means - center
    _, s, vt = jnp.linalg.svd(m, full_matrices=False)
    keep = s > rtol * s[0]
    inv = jnp.where(keep, 1.0 / jnp.square(jnp.where(keep, s, 1.0)), 0.0)
    proj = _mm(h - means[labels], vt.T)
    return _mm(jnp.square(proj), inv)


def _offdiag_cosines(m):
    """``[K, K]`` cosines between rows of m, and the off-diagonal mask."""
    u = _l2_rows(m)
    cos = _mm(u, u.T)
    k = m.shape[0]
    return cos, ~np.eye(k, dtype=bool)  # a static mask, so cos[off] works under jit


def _etf_distance(m):
    k = m.shape[0]
    g = _mm(m, m.T)
    etf = (jnp.eye(k) - jnp.ones((k, k)) / k) / jnp.sqrt(k - 1.0)
    return jnp.linalg.norm(g / jnp.linalg.norm(g) - etf)


# ----------------------------------------------------------------------------- public metrics


@functools.partial(jax.jit, static_argnames=("num_classes", "global_mean", "normalize"))
def nc1(features, labels, num_classes: int, *, global_mean: str = "sample",
        normalize: bool = False, rtol: float | None = None) -> jax.Array:
    """NC1 = tr(S_W S_B^+) / K (Papyan, Han & Donoho 2020), with S_W pooled over samples.

    Variants (also exposed as :func:`nc1_class_mean_global`, :func:`nc1_normalized`):
      * ``global_mean='sample'`` (default): ``mu_G`` = mean of all samples.
      * ``global_mean='class'``: ``mu_G`` = unweighted mean of the K class means (the same
        for balanced data).
      * ``normalize=True``: every feature is L2-normalised first (``h_i / ||h_i||``).

    Args:
      features: ``[N, D]``.
      labels: ``[N]`` int.
      num_classes: K.
      global_mean: ``'sample'`` or ``'class'``.
      normalize: L2-normalise features first.
      rtol: relative singular-value cut-off for ``S_B^+`` (default :func:`default_rtol`).

    Returns:
      float32 scalar.
    """
    h = jnp.asarray(features, jnp.float32)
    if normalize:
        h = _l2_rows(h)
    if rtol is None:
        rtol = default_rtol(num_classes, h.shape[1])
    means, _ = class_means(h, labels, num_classes)
    if global_mean == "sample":
        center = jnp.mean(h, axis=0)
    elif global_mean == "class":
        center = jnp.mean(means, axis=0)
    else:
        raise ValueError(f"global_mean must be 'sample' or 'class', got {global_mean!r}")
    return jnp.mean(_nc1_per_sample(h, labels, means, center, rtol))


def nc1_class_mean_global(features, labels, num_classes: int, **kw) -> jax.Array:
    """NC1 with ``mu_G`` = unweighted mean of the class means (``nc1(global_mean='class')``)."""
    return nc1(features, labels, num_classes, global_mean="class", **kw)


def nc1_normalized(features, labels, num_classes: int, **kw) -> jax.Array:
    """NC1 of L2-normalised features ``h_i / ||h_i||`` (``nc1(normalize=True)``)."""
    return nc1(features, labels, num_classes, normalize=True, **kw)


def _centred_means(features, labels, num_classes):
    h = jnp.asarray(features, jnp.float32)
    means, _ = class_means(h, labels, num_classes)
    return means - jnp.mean(h, axis=0), means


@functools.partial(jax.jit, static_argnames=("num_classes", "ddof"))
def nc2_equinorm(features, labels, num_classes: int, *, ddof: int = 0) -> jax.Array:
    """NC2 equinorm: ``std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||``.

    The coefficient of variation of the centred class-mean norms; ``ddof=0`` (population
    std) by default; implementations built on ``torch.std`` use ``ddof=1``, which is
    ``sqrt(K / (K - 1))`` times larger.

    Returns:
      float32 scalar.
    """
    m, _ = _centred_means(features, labels, num_classes)
    norms = jnp.linalg.norm(m, axis=1)
    return _std(norms, ddof) / jnp.mean(norms)


@functools.partial(jax.jit, static_argnames=("num_classes", "ddof"))
def nc2_equiangularity(features, labels, num_classes: int, *, ddof: int = 0) -> jax.Array:
    """NC2 equiangularity (Papyan et al. 2020): std of ``cos(mu_c - mu_G, mu_c' - mu_G)``.

    Over the K(K-1) off-diagonal entries (c != c') of the cosine matrix of centred means;
    ``ddof`` as in :func:`nc2_equinorm`.

    Returns:
      float32 scalar.
    """
    m, _ = _centred_means(features, labels, num_classes)
    cos, off = _offdiag_cosines(m)
    return _std(cos[off], ddof)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def nc2_angle_to_etf(features, labels, num_classes: int) -> jax.Array:
    """NC2 maximal-angle deviation: ``mean_{c != c'} |cos(mu_c - mu_G, mu_c' - mu_G) + 1/(K-1)|``.

    Zero for a simplex ETF, whose centred means meet at cosine ``-1/(K-1)`` (Papyan et al.
    2020, the 'max-angle' panel).

    Returns:
      float32 scalar.
    """
    m, _ = _centred_means(features, labels, num_classes)
    cos, off = _offdiag_cosines(m)
    return jnp.mean(jnp.abs(cos[off] + 1.0 / (num_classes - 1)))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def nc2_etf_distance(features, labels, num_classes: int) -> jax.Array:
    """NC2 as a distance to the simplex ETF (Zhu et al. 2021):

    ``|| G / ||G||_F - (I - 11^T / K) / sqrt(K - 1) ||_F`` with ``G = M M^T`` the Gram matrix
    of the centred class means (``||I - 11^T/K||_F = sqrt(K - 1)``, so both terms have unit
    Frobenius norm).

    Returns:
      float32 scalar.
    """
    m, _ = _centred_means(features, labels, num_classes)
    return _etf_distance(m)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def nc3_self_duality(features, labels, num_classes: int, weights) -> jax.Array:
    """NC3 self-duality, **unsquared**: ``|| W / ||W||_F - M / ||M||_F ||_F``.

    Papyan et al. (2020) plot the square of this distance; that form is
    :func:`nc3_self_duality_squared`. (The square of a number in [0, 2] is in [0, 4].)

    Args:
      weights: ``[K, D]`` classifier weights (row c for class c).

    Returns:
      float32 scalar.
    """
    m, _ = _centred_means(features, labels, num_classes)
    w = jnp.asarray(weights, jnp.float32)
    return jnp.linalg.norm(w / jnp.linalg.norm(w) - m / jnp.linalg.norm(m))


def nc3_self_duality_squared(features, labels, num_classes: int, weights) -> jax.Array:
    """NC3 as Papyan et al. (2020) define it: ``|| W / ||W||_F - M / ||M||_F ||_F^2``.

    Returns:
      float32 scalar (the square of :func:`nc3_self_duality`).
    """
    return jnp.square(nc3_self_duality(features, labels, num_classes, weights))


def _simplex_etf(k):
    return (jnp.eye(k) - jnp.ones((k, k)) / k) / jnp.sqrt(k - 1.0)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def nc3_zhu(features, labels, num_classes: int, weights) -> jax.Array:
    """NC3 of Zhu et al. (2021) and the CMF authors' ``nc_metrics``:
    ``|| W M^T / ||W M^T||_F - (I - 11^T / K) / sqrt(K - 1) ||_F``.

    ``W M^T`` ``[K, K]`` pairs every classifier row with every centred class mean; it equals
    a scaled simplex ETF exactly when ``W`` is a scaled copy of ``M`` and ``M`` is a simplex
    ETF (duality and NC2 together), unlike :func:`nc3_self_duality`, which needs duality only.

    Args:
      weights: ``[K, D]`` classifier weights.

    Returns:
      float32 scalar.
    """
    m, _ = _centred_means(features, labels, num_classes)
    wm = _mm(jnp.asarray(weights, jnp.float32), m.T)
    return jnp.linalg.norm(wm / jnp.linalg.norm(wm) - _simplex_etf(num_classes))


def _classifier_pred(h, weights, bias):
    logits = _mm(h, jnp.asarray(weights, jnp.float32).T)
    if bias is not None:
        logits = logits + jnp.asarray(bias, jnp.float32)
    return jnp.argmax(logits, axis=-1)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def nc4_ncc_disagreement(features, labels, num_classes: int, weights, bias=None) -> jax.Array:
    """NC4: fraction of samples where ``argmax_c (W h + b)_c != argmin_c ||h - mu_c||``.

    Class means come from ``features``/``labels`` (pass the training set). Ties go to the
    lowest class index on both sides.

    Args:
      weights: ``[K, D]``; bias: ``[K]`` or ``None`` (zero).

    Returns:
      float32 scalar in [0, 1].
    """
    h = jnp.asarray(features, jnp.float32)
    means, _ = class_means(h, labels, num_classes)
    disagree = _classifier_pred(h, weights, bias) != ncc_predict(means, h)
    return jnp.mean(disagree.astype(jnp.float32))


def _misalignment_per_class(m, weights):
    w = jnp.asarray(weights, jnp.float32)
    return 1.0 - jnp.sum(_l2_rows(m) * _l2_rows(w), axis=1)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def misalignment_per_class(features, labels, num_classes: int, weights) -> jax.Array:
    """Per-class misalignment ``1 - cos(mu_c - mu_G, w_c)``.

    Args:
      features: ``[N, D]``; labels: ``[N]`` in ``[0, K)``; weights: ``[K, D]``.

    Returns:
      ``[K]`` float32 in [0, 2]; NaN for a class without samples.
    """
    m, _ = _centred_means(features, labels, num_classes)
    return _misalignment_per_class(m, weights)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def misalignment(features, labels, num_classes: int, weights) -> jax.Array:
    """Misalignment: ``mean_c [1 - cos(mu_c - mu_G, w_c)]`` (the CMF paper, arXiv 2604.08271;
    'NC3' in its authors' code).

    Args:
      weights: ``[K, D]``.

    Returns:
      float32 scalar in [0, 2].
    """
    return jnp.mean(misalignment_per_class(features, labels, num_classes, weights))


# ----------------------------------------------------------------------------- the CMF authors' conventions
#
# ycgao1/CMF_Unlearning, evaluation/nc.py, nc_metrics (lines 124-215): S_W averaged over
# classes, subsets centred at the mean of ALL samples, forget NC1 of the forget classes alone,
# Zhu's NC3, their CDNV and Delta = |W W^T - W M^T| with retain / forget blocks. Their
# nc_metrics also L2-normalises the features first (line 120); pass ``normalize=True`` for that.


def _subset_mask(num_classes, classes):
    mask = np.zeros(num_classes, bool)
    mask[np.asarray(classes, np.int64)] = True
    return mask


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _nc1_classes(h, labels, num_classes, class_mask, center, rtol):
    means, counts = class_means(h, labels, num_classes)
    m = jnp.where(class_mask[:, None], means - center, 0.0)
    _, s, vt = jnp.linalg.svd(m, full_matrices=False)
    keep = s > rtol * s[0]
    inv = jnp.where(keep, 1.0 / jnp.square(jnp.where(keep, s, 1.0)), 0.0)
    q = _mm(jnp.square(_mm(h - means[labels], vt.T)), inv)            # [N]
    in_s = class_mask[labels].astype(jnp.float32)
    per_class = _mm(jax.nn.one_hot(labels, num_classes, dtype=jnp.float32).T, q * in_s) / counts
    return jnp.sum(jnp.where(class_mask, per_class, 0.0)) / jnp.sum(class_mask)


def nc1_per_class_sw(features, labels, num_classes: int, classes=None, *, center: str = "all",
                     normalize: bool = False, rtol: float | None = None) -> float:
    """NC1 with S_W **averaged over classes** (the CMF authors' ``build_sw_sb``), on a class subset.

    With ``S`` the classes (default: all), ``K_S = |S|``, ``mu_G`` the mean of **all** samples
    (``center='all'``, the authors' retain / forget NC1) or of the samples of ``S``
    (``center='subset'``, their all-class NC1, where both coincide):

        S_W = (1/K_S) sum_{c in S} (1/N_c) sum_{i: y_i = c} (h_i - mu_c)(h_i - mu_c)^T
        S_B = (1/K_S) sum_{c in S} (mu_c - mu_G)(mu_c - mu_G)^T
        NC1 = tr(S_W S_B^+) / K_S

    On balanced data with ``S`` = all classes this equals :func:`nc1` (pooled S_W). For one
    forget class, ``S_B`` has rank 1 and NC1 is ``u^T S_W u / ||mu_f - mu_G||^2`` with ``u``
    the unit direction of ``mu_f - mu_G``.

    Args:
      features: ``[N, D]``; labels: ``[N]`` int; num_classes: K.
      classes: the class subset ``S`` (default all K).
      center: ``'all'`` or ``'subset'``.
      normalize: L2-normalise the features first (the authors' ``nc_metrics`` does).
      rtol: singular-value cut-off for ``S_B^+`` (default :func:`default_rtol`).

    Returns:
      Python float.
    """
    h = jnp.asarray(features, jnp.float32)
    if normalize:
        h = _l2_rows(h)
    y = jnp.asarray(labels, jnp.int32)
    classes = np.arange(num_classes) if classes is None else np.asarray(classes)
    missing = np.setdiff1d(classes, np.asarray(labels))
    if missing.size:
        raise ValueError(f"classes without samples: {missing.tolist()}")
    mask = _subset_mask(num_classes, classes)
    if center == "all":
        mu_g = jnp.mean(h, axis=0)
    elif center == "subset":
        mu_g = jnp.mean(h[np.isin(np.asarray(labels), classes)], axis=0)
    else:
        raise ValueError(f"center must be 'all' or 'subset', got {center!r}")
    r = default_rtol(num_classes, h.shape[1]) if rtol is None else rtol
    return float(_nc1_classes(h, y, num_classes, jnp.asarray(mask), mu_g, jnp.float32(r)))


def nc2_etf_distance_subset(features, labels, num_classes: int, classes, *,
                            normalize: bool = False) -> float:
    """NC2 ETF distance of a class subset ``S`` centred at the mean of **all** samples (the
    authors' ``NC2_ret``): :func:`nc2_etf_distance`'s formula on the rows ``c in S`` of
    ``mu_c - mu_G``, against the ``K_S``-class simplex ETF."""
    h = jnp.asarray(features, jnp.float32)
    if normalize:
        h = _l2_rows(h)
    m, _ = _centred_means(h, labels, num_classes)
    return float(_etf_distance(m[np.asarray(classes)]))


def self_duality_delta(features, labels, num_classes: int, weights, classes=None) -> float:
    """``Delta = || W W^T - W M^T ||_F`` over the ``[S, S]`` block (the authors' ``Delta_*``).

    ``M`` are the class means centred at the mean of all samples; both ``[K, K]`` Gram
    matrices are formed over all classes and the rows and columns ``S`` (default all) kept.
    Zero when ``W = M`` (self-duality with unit scale); unlike NC3 it is not scale-free.

    Returns:
      Python float.
    """
    m, _ = _centred_means(features, labels, num_classes)
    w = jnp.asarray(weights, jnp.float32)
    d = _mm(w, w.T) - _mm(w, m.T)
    idx = np.arange(num_classes) if classes is None else np.asarray(classes)
    return float(jnp.linalg.norm(d[np.ix_(idx, idx)]))


def _class_var_and_means(features, labels, num_classes):
    h = jnp.asarray(features, jnp.float32)
    means, counts = class_means(h, labels, num_classes)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    var = _mm(onehot.T, jnp.sum(jnp.square(h - means[labels]), axis=1)) / counts  # [K]
    return var, means


def cdnv(features, labels, num_classes: int, classes=None) -> float | None:
    """Class-distance normalised variance (Galanti et al. 2022): the mean over class pairs
    ``c < c'`` of ``(var_c + var_c') / (2 ||mu_c - mu_c'||^2)``, with
    ``var_c = mean_{i: y_i = c} ||h_i - mu_c||^2``. ``None`` for fewer than 2 classes.

    Returns:
      Python float or ``None``.
    """
    pairs = _class_pairs(features, labels, num_classes, classes)
    if pairs is None:
        return None
    var_sum, d2 = pairs
    return float(np.mean(var_sum / (2.0 * d2)))


def _class_pairs(features, labels, num_classes: int, classes=None):
    """``(var_c + var_c' [P], ||mu_c - mu_c'||^2 [P])`` over the class pairs ``c < c'`` (float64),
    or None for fewer than 2 classes."""
    idx = np.arange(num_classes) if classes is None else np.asarray(classes)
    if idx.size < 2:
        return None
    var, means = _class_var_and_means(features, labels, num_classes)
    var, means = np.asarray(var, np.float64)[idx], np.asarray(means, np.float64)[idx]
    iu = np.triu_indices(idx.size, 1)
    return (var[:, None] + var[None])[iu], np.sum(np.square(means[:, None] - means[None]), axis=-1)[iu]


def cdnv_authors(features, labels, num_classes: int, classes=None) -> float | None:
    """The CMF authors' ``cdnv`` (evaluation/nc.py lines 152-162): a ratio of sums over the
    pairs ``c < c'`` divided by the number of pairs again,
    ``[sum (var_c + var_c') / sum 2 ||mu_c - mu_c'||^2] * 2 / (K_S (K_S - 1))``.

    Not Galanti's CDNV (:func:`cdnv`): it pools the pairs before dividing and then divides by
    the pair count a second time, so it scales like ``CDNV / #pairs``. ``None`` for fewer than
    2 classes.
    """
    pairs = _class_pairs(features, labels, num_classes, classes)
    if pairs is None:
        return None
    var_sum, d2 = pairs
    return float(np.sum(var_sum) / np.sum(2.0 * d2) / var_sum.size)  # 2 / (K (K - 1)) = 1 / #pairs


def ncc_train_accuracy(features, labels, num_classes: int, forget_classes=None) -> dict:
    """NCC accuracy on the training features themselves (class means of all of them, every
    class), split into retain and forget classes.

    (The authors' ``compute_nc_all`` recomputes the means on each subset's own samples, so
    its forget value for one class is 100 % by construction; this is the full-set version.)

    Returns:
      :func:`jaxunlearn.heads.split_accuracy`'s ``{"retain", "forget", "all"}``.
    """
    from jaxunlearn.heads import ncc_fit, split_accuracy
    h = jnp.asarray(features, jnp.float32)
    pred = ncc_predict(ncc_fit(h, jnp.asarray(labels, jnp.int32), num_classes), h)
    return split_accuracy(np.asarray(pred), np.asarray(labels), forget_classes)


def authors_metrics(features, labels, num_classes: int, weights=None, forget_classes=None, *,
                    normalize: bool = False) -> dict:
    """The CMF authors' NC quantities (``nc_metrics``, evaluation/nc.py lines 169-215), by name.

    Keys: ``nc1_all`` (:func:`nc1_per_class_sw` over all classes), ``nc1_retain`` /
    ``nc1_forget`` (the retain / forget classes alone, centred at the mean of all samples),
    ``nc2_all`` / ``nc2_retain`` (:func:`nc2_etf_distance_subset`), ``cdnv_all`` /
    ``cdnv_retain`` / ``cdnv_forget`` (:func:`cdnv_authors`) and, with weights, ``nc3_zhu``
    (:func:`nc3_zhu`) and ``delta_all`` / ``delta_retain`` / ``delta_forget``
    (:func:`self_duality_delta`). Retain / forget keys are ``None`` without forget classes;
    ``cdnv_forget`` is ``None`` for one forget class.

    Args:
      features: ``[N, D]`` (normally the training set, true labels); labels ``[N]``.
      num_classes: K.
      weights: ``[K, D]`` or ``None``.
      forget_classes: ``[F]`` or ``None``.
      normalize: L2-normalise the features first (as the authors' ``nc_metrics``).

    Returns:
      dict of Python floats / ``None``.
    """
    h = np.asarray(features, np.float32)
    y = np.asarray(labels).astype(np.int32)
    _check_inputs(h, y, num_classes, None if weights is None else np.asarray(weights), None)
    if normalize:
        h = np.asarray(_l2_rows(jnp.asarray(h)))
    fc = np.unique(np.asarray([] if forget_classes is None else forget_classes, np.int64).reshape(-1))
    rc = np.setdiff1d(np.arange(num_classes), fc)
    has_f = fc.size > 0
    out = {
        "nc1_all": nc1_per_class_sw(h, y, num_classes),
        "nc1_retain": nc1_per_class_sw(h, y, num_classes, rc) if has_f else None,
        "nc1_forget": nc1_per_class_sw(h, y, num_classes, fc) if has_f else None,
        "nc2_all": float(nc2_etf_distance(h, y, num_classes)),
        "nc2_retain": nc2_etf_distance_subset(h, y, num_classes, rc) if has_f and rc.size >= 2 else None,
        "cdnv_all": cdnv_authors(h, y, num_classes),
        "cdnv_retain": cdnv_authors(h, y, num_classes, rc) if has_f else None,
        "cdnv_forget": cdnv_authors(h, y, num_classes, fc) if has_f else None,
    }
    if weights is not None:
        w = np.asarray(weights, np.float32)
        out["nc3_zhu"] = float(nc3_zhu(h, y, num_classes, w))
        out["delta_all"] = self_duality_delta(h, y, num_classes, w)
        out["delta_retain"] = self_duality_delta(h, y, num_classes, w, rc) if has_f else None
        out["delta_forget"] = self_duality_delta(h, y, num_classes, w, fc) if has_f else None
    return out


# ----------------------------------------------------------------------------- everything


@functools.partial(jax.jit, static_argnames=("num_classes", "ddof", "has_weights"))
def _all_metrics(h, labels, weights, bias, forget_mask, rtol, *, num_classes, ddof,
                 has_weights):
    """All defaults and variants plus the forget-class restrictions, in one pass."""
    k = num_classes
    means, _ = class_means(h, labels, k)
    mu_g = jnp.mean(h, axis=0)
    m = means - mu_g
    q = _nc1_per_sample(h, labels, means, mu_g, rtol)
    norms = jnp.linalg.norm(m, axis=1)
    cos, off = _offdiag_cosines(m)
    hn = _l2_rows(h)
    means_n, _ = class_means(hn, labels, k)
    out = {
        "nc1": jnp.mean(q),
        "nc1_class_mean_global": jnp.mean(
            _nc1_per_sample(h, labels, means, jnp.mean(means, axis=0), rtol)),
        "nc1_normalized": jnp.mean(
            _nc1_per_sample(hn, labels, means_n, jnp.mean(hn, axis=0), rtol)),
        "nc2_equinorm": _std(norms, ddof) / jnp.mean(norms),
        "nc2_equiangularity": _std(cos[off], ddof),
        "nc2_angle_to_etf": jnp.mean(jnp.abs(cos[off] + 1.0 / (k - 1))),
        "nc2_etf_distance": _etf_distance(m),
    }
    fm = forget_mask.astype(jnp.float32)
    sample_f = fm[labels]
    n_f = jnp.sum(sample_f)
    pair_f = (fm[:, None] * off).astype(jnp.float32)  # pairs (c in F, c' != c)
    forget = {
        "nc1": jnp.sum(q * sample_f) / n_f,
        "centred_norm_ratio": (jnp.sum(norms * fm) / jnp.sum(fm)) / jnp.mean(norms),
        "nc2_angle_to_etf": jnp.sum(jnp.abs(cos + 1.0 / (k - 1)) * pair_f) / jnp.sum(pair_f),
    }
    if has_weights:
        w = jnp.asarray(weights, jnp.float32)
        mis = _misalignment_per_class(m, w)
        disagree = (_classifier_pred(h, w, bias) != ncc_predict(means, h)).astype(jnp.float32)
        out["nc3_self_duality"] = jnp.linalg.norm(w / jnp.linalg.norm(w) - m / jnp.linalg.norm(m))
        out["nc4_ncc_disagreement"] = jnp.mean(disagree)
        out["misalignment"] = jnp.mean(mis)
        forget["misalignment"] = jnp.sum(mis * fm) / jnp.sum(fm)
        forget["nc4_ncc_disagreement"] = jnp.sum(disagree * sample_f) / n_f
    return out, forget


def _to_float(tree):
    return {k: (None if not np.isfinite(v) else float(v))
            for k, v in jax.device_get(tree).items()}


def _check_inputs(h, labels, num_classes, weights, bias):
    if h.ndim != 2 or labels.shape != (h.shape[0],):
        raise ValueError(f"features must be [N, D] and labels [N]; got {h.shape}, {labels.shape}")
    if num_classes < 2:
        raise ValueError(f"collapse metrics need at least 2 classes, got num_classes={num_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    missing = np.setdiff1d(np.arange(num_classes), labels)
    if missing.size:
        raise ValueError(f"classes without samples: {missing.tolist()}")
    if weights is not None and weights.shape != (num_classes, h.shape[1]):
        raise ValueError(
            f"weights must be [K, D] = {(num_classes, h.shape[1])}, got {weights.shape}")
    if bias is not None and (weights is None or bias.shape != (num_classes,)):
        raise ValueError(f"bias must be [K] = ({num_classes},) and needs weights")


def collapse_metrics(
    features,
    labels,
    num_classes: int,
    weights=None,
    bias=None,
    forget_classes: Sequence[int] | np.ndarray | None = None,
    *,
    ddof: int = 0,
    rtol: float | None = None,
    with_retain: bool = True,
) -> dict:
    """Every neural-collapse metric, overall and restricted to retain / forget classes.

    Top level (all classes): ``nc1``, ``nc1_class_mean_global``, ``nc1_normalized``,
    ``nc2_equinorm``, ``nc2_equiangularity``, ``nc2_angle_to_etf``, ``nc2_etf_distance``
    and, when ``weights`` is given, ``nc3_self_duality``, ``nc4_ncc_disagreement``,
    ``misalignment`` (formulas in the functions of the same names).

    ``retain``: the same keys, **recomputed from scratch** on the retain classes only: their
    samples, their class means, their own sample mean ``mu_G``, ``K_r`` = number of retain
    classes, and the retain rows of ``W`` / entries of ``b`` (NC4's argmax runs over retain
    logits only). ``None`` when fewer than 2 retain classes remain.

    ``forget``: per-class quantities of the forget classes **inside the full-model geometry**
    (means, ``mu_G``, ``S_B`` and K from all classes):
      * ``nc1``: ``(1/N_F) sum_{i: y_i in F} sum_j ((h_i - mu_{y_i}) . v_j)^2 / s_j^2``, i.e.
        ``tr(S_W^F S_B^+) / K`` with ``S_W^F`` the within-class scatter of the forget samples
        (normalised by their count ``N_F``); the global ``nc1`` is the ``N_c/N``-weighted mean
        of these per-class values.
      * ``centred_norm_ratio``: ``mean_{c in F} ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||``
        (1 when the forget means are as far from ``mu_G`` as average; -> 0 if they collapse
        onto the global mean). Used instead of a forget-only equinorm, which is 0 for one class.
      * ``nc2_angle_to_etf``: ``mean |cos(mu_c - mu_G, mu_c' - mu_G) + 1/(K-1)|`` over
        ``c in F, c' != c``.
      * with weights: ``misalignment`` = ``mean_{c in F} [1 - cos(mu_c - mu_G, w_c)]`` and
        ``nc4_ncc_disagreement`` over the forget-class samples.
    ``None`` when ``forget_classes`` is ``None`` or empty.

    Args:
      features: ``[N, D]`` features (normally the full training set, true labels).
      labels: ``[N]`` int labels in ``[0, K)``; every class needs a sample.
      num_classes: K >= 2.
      weights: ``[K, D]`` classifier weights or ``None`` (then nc3/nc4/misalignment are
        skipped).
      bias: ``[K]`` or ``None``.
      forget_classes: ``[F]`` class ids or ``None``.
      ddof: delta degrees of freedom of the std in equinorm / equiangularity.
      rtol: singular-value cut-off for ``S_B^+`` (default :func:`default_rtol`).
      with_retain: compute the ``retain`` sub-dict (a second pass over the retain samples;
        ``False`` leaves it ``None``).

    Returns:
      A dict of Python floats (``None`` where undefined), with ``retain`` and ``forget``
      sub-dicts.

    Raises:
      ValueError: on malformed shapes, labels out of range or a class without samples.
    """
    h = np.asarray(features, np.float32)
    y = np.asarray(labels).astype(np.int32)
    w = None if weights is None else np.asarray(weights, np.float32)
    b = None if bias is None else np.asarray(bias, np.float32)
    _check_inputs(h, y, num_classes, w, b)
    fc = np.unique(np.asarray([] if forget_classes is None else forget_classes,
                              dtype=np.int64).reshape(-1))
    if fc.size and (fc.min() < 0 or fc.max() >= num_classes):
        raise ValueError(f"forget_classes {fc.tolist()} outside [0, {num_classes})")
    forget_mask = np.isin(np.arange(num_classes), fc)

    def run(h, y, k, w, b, fmask):
        r = default_rtol(k, h.shape[1]) if rtol is None else rtol
        return _all_metrics(jnp.asarray(h), jnp.asarray(y), w, b, jnp.asarray(fmask),
                            jnp.float32(r), num_classes=k, ddof=ddof, has_weights=w is not None)

    out, forget = run(h, y, num_classes, w, b, forget_mask)
    result = _to_float(out)
    result["forget"] = _to_float(forget) if fc.size else None

    retain_classes = np.flatnonzero(~forget_mask)
    result["retain"] = None
    if with_retain and fc.size and retain_classes.size >= 2:
        keep = ~np.isin(y, fc)
        remap = np.full(num_classes, -1, np.int32)
        remap[retain_classes] = np.arange(retain_classes.size, dtype=np.int32)
        k_r = retain_classes.size
        r_out, _ = run(h[keep], remap[y[keep]], k_r,
                       None if w is None else w[retain_classes],
                       None if b is None else b[retain_classes], np.zeros(k_r, bool))
        result["retain"] = _to_float(r_out)
    return result
