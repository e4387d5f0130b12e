"""Neural-collapse metrics ("collapse") of the training features and the classifier
(:func:`jaxunlearn.collapse.collapse_metrics`); the ``retain`` / ``forget`` restrictions are
per class, so they exist for class forgetting only.

The section also carries the CMF authors' conventions (issue 16, P11): ``authors``
(:func:`jaxunlearn.collapse.authors_metrics` of the training features), ``ncc_train``
(:func:`jaxunlearn.collapse.ncc_train_accuracy`: NCC of the full-training-set means on the
training features) and, with a classifier, ``test_misalignment`` (:func:`split_misalignment`:
the misalignment of the **test** features' class means)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from jaxunlearn import collapse as collapse_lib
from jaxunlearn.evaluators.base import ACCURACY_SPLITS, MODEL, ForgetSet, Inputs, is_number, leaves

NAME = "collapse"
NEEDS = ()


def _misalignment_of(h, y, num_classes, w):
    """:func:`jaxunlearn.collapse.misalignment_per_class` as a host array ``[K]`` (NaN for a
    class without samples)."""
    return np.asarray(collapse_lib.misalignment_per_class(h, y, num_classes, w), np.float64)


def _mean_or_none(x):
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else None


def split_misalignment(features, labels, num_classes: int, weights, forget_classes=()) -> dict:
    """Misalignment of the test features' class means to the classifier, in the conventions of
    :func:`jaxunlearn.collapse.collapse_metrics`' ``misalignment`` entries.

    * ``all``: ``mean_c [1 - cos(mu_c - mu_G, w_c)]`` over the classes (``mu_G`` the mean of
      every test sample); :func:`jaxunlearn.collapse.misalignment` of the test features.
    * ``retain``: the same recomputed on the retain classes' test samples alone (their own
      ``mu_G``, the retain rows of ``W``), as ``collapse_metrics``' ``retain`` dict.
    * ``forget``: the mean of the per-class values over the forget classes inside the
      all-class geometry, as ``collapse_metrics``' ``forget`` dict.

    Classes without test samples are left out of the means. ``retain`` / ``forget`` are
    ``None`` without forget classes (sample forgetting), and ``retain`` also with fewer than
    2 retain classes.

    Args:
      features: ``[M, D]`` test features; labels: ``[M]`` int in ``[0, K)``.
      num_classes: K.
      weights: ``[K, D]`` classifier weights.
      forget_classes: ``[F]`` class ids (empty: none).

    Returns:
      ``{"all", "retain", "forget"}``: Python floats in [0, 2] or ``None``.
    """
    h = np.asarray(features, np.float32)
    y = np.asarray(labels).astype(np.int32).reshape(-1)
    w = np.asarray(weights, np.float64)
    if h.ndim != 2 or y.shape != (h.shape[0],) or w.shape != (num_classes, h.shape[1]):
        raise ValueError(f"test_misalignment: features [M, D], labels [M] and weights [K, D] with "
                         f"K={num_classes}; got {h.shape}, {y.shape}, {w.shape}")
    fc = np.unique(np.asarray(forget_classes, np.int64).reshape(-1))
    per = _misalignment_of(h, y, num_classes, w)
    out = {"all": _mean_or_none(per), "retain": None, "forget": None}
    if fc.size:
        out["forget"] = _mean_or_none(per[fc])
        rc = np.setdiff1d(np.arange(num_classes), fc)
        keep = ~np.isin(y, fc)
        if rc.size >= 2 and keep.any():
            remap = np.full(num_classes, -1, np.int32)
            remap[rc] = np.arange(rc.size)
            out["retain"] = _mean_or_none(_misalignment_of(h[keep], remap[y[keep]], rc.size, w[rc]))
    return out


def evaluate(inputs: Inputs, forget: ForgetSet, **config) -> dict:
    """``collapse_metrics`` of ``features["features"]`` on every training sample, with the
    classifier's weights and bias when known (``config`` goes to it: ``ddof``, ``rtol``, ...),
    plus ``authors`` / ``ncc_train`` of the same features and, with a classifier and test
    features, ``test_misalignment`` (module docstring). Without forget classes (sample
    forgetting) their retain / forget entries are ``None``."""
    f = inputs.features
    h, y = np.asarray(f.train_feats["features"]), np.asarray(inputs.train_labels)
    fc = forget.classes or None
    out = collapse_lib.collapse_metrics(h, y, inputs.num_classes, f.weights, f.bias, fc, **config)
    out["authors"] = collapse_lib.authors_metrics(h, y, inputs.num_classes, f.weights, fc)
    out["ncc_train"] = collapse_lib.ncc_train_accuracy(h, y, inputs.num_classes, fc)
    if f.weights is not None and "features" in f.test_feats:
        out["test_misalignment"] = split_misalignment(f.test_feats["features"], inputs.test_labels,
                                                     inputs.num_classes, f.weights, forget.classes)
    return out


def columns(value):
    """Top-level numbers on ``(model, all)``; the ``retain`` / ``forget`` dicts on their split;
    another group ``g`` on ``(model, all)`` as ``g_<name>`` (``authors_nc1_retain``,
    ``ncc_train_forget``, ``test_misalignment_all``, ...)."""
    for k, v in value.items():
        if isinstance(v, Mapping) and k in ACCURACY_SPLITS:
            for col, x in leaves(v):
                yield MODEL, k, col, x
        elif isinstance(v, Mapping):
            for col, x in leaves(v, f"{k}_"):
                yield MODEL, "all", col, x
        elif is_number(v):
            yield MODEL, "all", k, v
