"""Analyse saved feature arrays: load and validate an ``.npz``, run every head and metric,
write JSON atomically.

The ``.npz`` layout (``np.load(allow_pickle=False)``):

=================  ==========  ===================================================
key                shape       meaning
=================  ==========  ===================================================
train_features     [N, D]      penultimate features of the full training set
train_labels       [N]         int labels (every class 0..K-1 must occur)
test_features      [M, D]      test features
test_labels        [M]         int labels
weights            [K, D]      optional classifier weights (row c = class c)
bias               [K]         optional classifier bias (needs ``weights``)
forget_classes     [F] or []   optional forget class ids
forget_indices     [F]         optional forgotten training samples (row indices into
                               train_features; sample forgetting, instead of classes)
=================  ==========  ===================================================

K is ``weights.shape[0]`` when weights are given, else ``max label + 1``. The metrics are
those of the evaluator registry (:mod:`jaxunlearn.evaluators`) that need no logits: ``lp``,
``ncc``, ``knn``, ``collapse``.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
import zlib
from typing import Any, Mapping

import numpy as np

from jaxunlearn import evaluators
from jaxunlearn.runs import write_json_atomic  # noqa: F401  (the one atomic JSON writer, re-exported)

REQUIRED_KEYS = ("train_features", "train_labels", "test_features", "test_labels")
OPTIONAL_KEYS = ("weights", "bias", "forget_classes", "forget_indices")


def _int_labels(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d [N], got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has non-finite values")
        if not np.all(a == np.round(a)):
            raise ValueError(f"{name} has non-integer values")
    elif not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be integer, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise ValueError(f"{name} has negative labels")
    return a


def _finite_float(a: np.ndarray, name: str, ndim: int) -> np.ndarray:
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-d, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        bad = int(np.sum(~np.isfinite(a)))
        raise ValueError(f"{name} has {bad} non-finite (NaN/inf) values")
    return a


def validate_features(arrays: Mapping[str, Any]) -> dict:
    """Check and normalise a feature dict (the ``.npz`` layout above).

    Args:
      arrays: a mapping with the required keys and optionally ``weights``, ``bias``,
        ``forget_classes`` or ``forget_indices``; other keys are ignored.

    Returns:
      A dict with float32 features / weights / bias, int64 labels, forget classes and forget
      indices (sorted, unique; ``None`` when absent) and ``num_classes`` (int).

    Raises:
      ValueError: naming the problem: a missing key, a wrong rank, mismatched sample
        counts or feature dims, non-finite values, non-integer or negative labels, fewer
        than 2 classes, a class without training samples, forget classes out of range,
        forget indices out of range or given together with forget classes.
    """
    for key in REQUIRED_KEYS:
        if key not in arrays:
            raise ValueError(f"missing key {key!r} (required: {', '.join(REQUIRED_KEYS)})")
    out: dict = {}
    out["train_features"] = _finite_float(np.asarray(arrays["train_features"]), "train_features", 2)
    out["test_features"] = _finite_float(np.asarray(arrays["test_features"]), "test_features", 2)
    out["train_labels"] = _int_labels(np.asarray(arrays["train_labels"]), "train_labels")
    out["test_labels"] = _int_labels(np.asarray(arrays["test_labels"]), "test_labels")
    n, d = out["train_features"].shape
    m, d_test = out["test_features"].shape
    if out["train_labels"].shape[0] != n:
        raise ValueError(f"train_labels has {out['train_labels'].shape[0]} entries but "
                         f"train_features has {n} rows (mismatched shapes)")
    if out["test_labels"].shape[0] != m:
        raise ValueError(f"test_labels has {out['test_labels'].shape[0]} entries but "
                         f"test_features has {m} rows (mismatched shapes)")
    if d_test != d:
        raise ValueError(f"test_features has dim {d_test} but train_features has dim {d} "
                         "(mismatched shapes)")
    if n == 0 or m == 0:
        raise ValueError("train_features and test_features must have at least one row")
    n_train_classes = np.unique(out["train_labels"]).size
    if n_train_classes < 2:
        raise ValueError(f"train_labels has fewer than 2 classes ({n_train_classes})")
    max_label = int(max(out["train_labels"].max(), out["test_labels"].max()))

    weights = arrays.get("weights") if hasattr(arrays, "get") else None
    bias = arrays.get("bias") if hasattr(arrays, "get") else None
    if weights is not None:
        w = _finite_float(np.asarray(weights), "weights", 2)
        if w.shape[1] != d:
            raise ValueError(f"weights has shape {w.shape} but features have dim {d} "
                             "(mismatched shapes)")
        if w.shape[0] <= max_label:
            raise ValueError(f"weights has {w.shape[0]} rows but labels go up to {max_label}")
        out["weights"] = w
        num_classes = w.shape[0]
    else:
        out["weights"] = None
        num_classes = max_label + 1
    if bias is not None:
        if weights is None:
            raise ValueError("bias given without weights")
        bb = _finite_float(np.asarray(bias), "bias", 1)
        if bb.shape != (num_classes,):
            raise ValueError(f"bias has shape {bb.shape}, expected ({num_classes},) "
                             "(mismatched shapes)")
        out["bias"] = bb
    else:
        out["bias"] = None
    missing = np.setdiff1d(np.arange(num_classes), out["train_labels"])
    if missing.size:
        raise ValueError(f"train_labels has no samples of classes {missing.tolist()}")

    fc = arrays.get("forget_classes") if hasattr(arrays, "get") else None
    if fc is not None:
        fc = np.asarray(fc).reshape(-1)
        if fc.size:
            fc = _int_labels(fc, "forget_classes")
            if fc.max() >= num_classes:
                raise ValueError(f"forget_classes {fc.tolist()} outside [0, {num_classes})")
        out["forget_classes"] = np.unique(fc).astype(np.int64) if fc.size else None
    else:
        out["forget_classes"] = None
    fi = arrays.get("forget_indices") if hasattr(arrays, "get") else None
    out["forget_indices"] = None
    if fi is not None:
        fi = np.asarray(fi).reshape(-1)
        if fi.size:
            if out["forget_classes"] is not None:
                raise ValueError("give forget_classes or forget_indices, not both")
            fi = _int_labels(fi, "forget_indices")
            if fi.max() >= n:
                raise ValueError(f"forget_indices go up to {int(fi.max())} but train_features has {n} rows")
            out["forget_indices"] = np.unique(fi)
    out["num_classes"] = int(num_classes)
    return out


def load_features_npz(path: str | os.PathLike) -> dict:
    """Load and validate a feature ``.npz`` (see the module docstring for its layout).

    Args:
      path: the ``.npz`` file.

    Returns:
      The dict of :func:`validate_features`.

    Raises:
      ValueError: for a missing, unreadable or truncated file and for any malformed content
        (the message names the key and the problem), including object arrays (pickles are
        never loaded).
    """
    if not os.path.isfile(path):
        raise ValueError(f"features file {path} not found")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError:  # numpy refuses pickled (or unrecognised) content when allow_pickle=False
        raise ValueError(f"{path} is not an .npz archive of arrays (pickled or unknown content is "
                         "never loaded)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable .npz archive (truncated or corrupt?): {e}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz archive with the keys "
                         f"{', '.join(REQUIRED_KEYS)}")
    with data:
        arrays = {}
        for key in data.files:
            if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
                continue
            try:
                arrays[key] = data[key]
            except ValueError as e:  # object arrays need pickle
                raise ValueError(f"key {key!r} cannot be loaded without pickle: {e}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise ValueError(f"{path}: key {key!r} is corrupt: {e}") from None
    return validate_features(arrays)


def analyze_features(arrays: Mapping[str, Any], probe: str = "fast", *, knn: bool = True,
                     evaluators_config: Mapping[str, Mapping] | None = None) -> dict:
    """Every head and collapse metric for one set of features: validate, then run the registry.

    Args:
      arrays: a dict in the ``.npz`` layout (validated with :func:`validate_features`).
      probe: ``'fast'`` (L-BFGS probe) or ``'sgd'`` (the paper's SGD protocol).
      knn: include the cosine 5-NN head.
      evaluators_config: ``{name: config}`` of registry evaluators to run instead of
        ``ncc, lp, knn, collapse`` (those needing logits or a model cannot run on features).

    Returns:
      ``{"ncc": acc, "lp": acc, "knn": acc, "collapse": {...}, "runtime_s": float,
      "timings": {...}, "num_classes": K, "forget_classes": [...] | None, "n_train": N,
      "n_test": M, "dim": D, "probe": probe}`` (and ``"num_forget_samples"`` with
      ``forget_indices``) where each ``acc`` is ``{"retain": float, "forget": float | None,
      "all": float}`` (test accuracy as a fraction; without forget classes, ``forget`` is
      ``None`` and ``retain`` equals ``all``; with forget indices the heads are fitted on the
      other training samples and add ``train_retain`` / ``train_forget``) and ``collapse`` is
      :func:`jaxunlearn.collapse.collapse_metrics` on the training features (defaults by
      name at its top level, ``retain`` / ``forget`` sub-dicts).
    """
    t_start = time.perf_counter()
    a = validate_features(arrays)
    k = a["num_classes"]
    n, m = a["train_features"].shape[0], a["test_features"].shape[0]
    feats = evaluators.Features(None, {"features": a["train_features"]}, None, {"features": a["test_features"]},
                                a["weights"], a["bias"])
    inputs = evaluators.Inputs(feats, a["train_labels"], a["test_labels"], k)
    if a["forget_indices"] is not None:
        forget = evaluators.ForgetSet.from_indices(n, m, a["forget_indices"])
    else:
        forget = evaluators.ForgetSet.from_classes(a["train_labels"], a["test_labels"], a["forget_classes"])
    sel = evaluators_config if evaluators_config is not None else {
        "ncc": {}, "lp": {"probe": probe}, **({"knn": {}} if knn else {}), "collapse": {}}
    out, timings = evaluators.run(inputs, forget, sel)
    fc = a["forget_classes"]
    out.update({
        "num_classes": k,
        "forget_classes": None if fc is None else fc.tolist(),
        "n_train": int(n),
        "n_test": int(m),
        "dim": int(a["train_features"].shape[1]),
        "probe": probe,
        "timings": timings,
    })
    if a["forget_indices"] is not None:
        out["num_forget_samples"] = int(len(a["forget_indices"]))
    out["runtime_s"] = time.perf_counter() - t_start
    return out
