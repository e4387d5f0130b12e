"""stats.summarize against NumPy / scipy recomputations and closed-form t quantiles."""

import math

import numpy as np
import pytest
import scipy.stats

from jaxunlearn import stats


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_summarize_matches_numpy_and_scipy(n):
    x = np.random.default_rng(n).normal(0.7, 0.05, size=n)
    s = stats.summarize(list(x))
    assert s["n"] == n
    assert s["mean"] == pytest.approx(np.mean(x), rel=1e-12)
    assert s["std"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    lo, hi = scipy.stats.t.interval(0.95, n - 1, loc=np.mean(x), scale=scipy.stats.sem(x))
    assert s["ci_low"] == pytest.approx(lo, rel=1e-10)
    assert s["ci_high"] == pytest.approx(hi, rel=1e-10)
    assert s["ci95"] == pytest.approx((hi - lo) / 2, rel=1e-10)


def test_t_quantiles_closed_form():
    # dof = 1 is Cauchy: q-quantile = tan(pi (q - 1/2)); dof = 2: t = (2q-1) sqrt(2 / (1 - (2q-1)^2))
    assert stats.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-10)
    a = 2 * 0.975 - 1
    assert stats.t_quantile(0.975, 2) == pytest.approx(a * math.sqrt(2 / (1 - a * a)), rel=1e-10)
    assert stats.t_quantile(0.975, 10 ** 7) == pytest.approx(1.959964, abs=1e-5)  # -> normal
    with pytest.raises(ValueError, match="dof"):
        stats.t_quantile(0.975, 0)


def test_two_values_closed_form():
    # n = 2: std = |a - b| / sqrt 2, half-width = t_{.975,1} * std / sqrt 2 = 12.7062 |a - b| / 2
    s = stats.summarize([0.8, 0.9])
    assert s["std"] == pytest.approx(0.1 / math.sqrt(2))
    assert s["ci95"] == pytest.approx(12.706204736174705 * 0.05, rel=1e-9)


def test_missing_values_are_ignored_and_small_n():
    assert stats.summarize([0.5, None, float("nan"), 0.7]) == stats.summarize([0.5, 0.7])
    one = stats.summarize([0.25, None])
    assert one == {"mean": 0.25, "std": 0.0, "n": 1, "ci95": None, "ci_low": None, "ci_high": None}
    none = stats.summarize([None, float("nan")])
    assert none["n"] == 0 and none["mean"] is None and none["ci95"] is None
    assert stats.summarize(np.float32([1, 2, 3]))["mean"] == pytest.approx(2.0)


def test_other_confidence_level():
    x = [1.0, 2.0, 4.0, 8.0]
    lo, hi = scipy.stats.t.interval(0.9, 3, loc=np.mean(x), scale=scipy.stats.sem(x))
    s = stats.summarize(x, confidence=0.9)
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="infinite"):
        stats.summarize([1.0, float("inf")])
    with pytest.raises(ValueError, match="not a number"):
        stats.summarize([1.0, "a"])
    with pytest.raises(ValueError, match="confidence"):
        stats.summarize([1.0, 2.0], confidence=95)


def test_summarize_pointwise():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(4, 6))
    out = stats.summarize_pointwise(a.tolist())
    assert [s["mean"] for s in out] == pytest.approx(a.mean(0).tolist())
    assert [s["std"] for s in out] == pytest.approx(a.std(0, ddof=1).tolist())
    assert stats.summarize_pointwise([]) == []
    with pytest.raises(ValueError, match="one step grid"):
        stats.summarize_pointwise([[1.0, 2.0], [1.0]])
