"""Summary statistics over seeds: mean, sample standard deviation and a Student-t 95 % CI.

Used by the report tables: a cell is ``summarize`` of one metric over the seeds of a run.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def clean(values: Iterable[float | None]) -> np.ndarray:
    """The finite values as float64 ``[n]``: ``None`` and NaN are dropped (missing), ±inf is refused.

    Raises:
      ValueError: a value is infinite or not a number.
    """
    out = []
    for v in values:
        if v is None:
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"summarize: {v!r} is not a number; pass floats (None/NaN mark a missing value)") from None
        if math.isnan(x):
            continue
        if math.isinf(x):
            raise ValueError(f"summarize: {v!r} is infinite; drop it or pass None for a missing value")
        out.append(x)
    return np.asarray(out, np.float64)


def t_quantile(q: float, dof: int) -> float:
    """The ``q`` quantile of Student's t distribution with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"t_quantile: dof must be >= 1, got {dof}")
    from scipy import stats as _st  # scipy comes with scikit-learn, a dependency

    return float(_st.t.ppf(q, dof))


def summarize(values: Iterable[float | None], confidence: float = 0.95) -> dict:
    """Mean, sample std and the two-sided Student-t confidence interval of ``values``.

    Args:
      values: numbers (one per seed); ``None`` and NaN are ignored.
      confidence: coverage of the interval (0.95 gives the 95 % CI).

    Returns:
      ``{"mean", "std", "n", "ci95", "ci_low", "ci_high"}``: ``std`` with ``ddof=1`` (0.0 for
      ``n = 1``); ``ci95`` the half-width ``t_{(1+c)/2, n-1} * std / sqrt(n)`` and
      ``ci_low``/``ci_high`` = mean ∓ ci95 (all three ``None`` for ``n < 2``). With no values,
      ``mean`` and ``std`` are ``None`` and ``n`` is 0. The key is ``ci95`` whatever ``confidence``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"summarize: confidence must be in (0, 1), got {confidence}")
    x = clean(values)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "ci95": None, "ci_low": None, "ci_high": None}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "std": 0.0, "n": 1, "ci95": None, "ci_low": None, "ci_high": None}
    std = float(x.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci95": half, "ci_low": mean - half, "ci_high": mean + half}


def summarize_pointwise(curves, confidence: float = 0.95) -> list[dict]:
    """:func:`summarize` at every point of equal-length curves (one per seed), e.g. a learning
    curve measured on the same step grid for each seed.

    Args:
      curves: ``[seeds][points]`` numbers (``None``/NaN ignored per point).

    Returns:
      One summary per point.

    Raises:
      ValueError: the curves have different lengths (put them on one grid first).
    """
    curves = [list(c) for c in curves]
    lengths = sorted({len(c) for c in curves})
    if len(lengths) > 1:
        raise ValueError(f"summarize_pointwise: curves have lengths {lengths}; evaluate every seed on one step grid")
    if not curves:
        return []
    return [summarize([c[i] for c in curves], confidence) for i in range(lengths[0])]
