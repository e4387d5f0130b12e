"""Forgetting quality from many models: the NeurIPS 2023 competition's ε score and U-LiRA.

Pure NumPy (float64) functions over ``[models, examples]`` arrays. The spec is
``FORGETTING_QUALITY.md`` (shared docs); the definitions as implemented, and every choice the
spec leaves open, are in ``docs/forgetting_quality.md``.

* :func:`phi` -- LiRA's logit-scaled confidence ``ln(p_y + 1e-45) - ln(sum_{j!=y} p_j + 1e-45)``.
* :func:`example_epsilons` -- per-example ε from the single-threshold and interval attacks
  that tell unlearned from retrained models apart (the competition's ``metric.py`` rules).
* :func:`forgetting_quality` -- the binned score ``F = mean_s 2 / 2^n(s)``.
* :func:`final_score` -- ``F * (RA_U / RA_R) * (TA_U / TA_R)``.
* :func:`retrain_floor` -- F of one random half of a retrained pool against the other half.
* :func:`score_pool` -- all of the above for one pool, as a dict.
* :func:`ulira` -- Hayes et al.'s per-example likelihood-ratio test (U-LiRA): accuracy and AUC.

The attacks are evaluated on exactly the threshold grids of the spec (NumPy ``linspace``
arithmetic, reproduced bit for bit), but without materialising the 400 x 400 interval grid per
example: the counts of models inside an interval only change where a threshold crosses a data
point, so each example is scored on the distinct (count, count) pairs its grid produces. The
result equals a direct per-threshold evaluation (``tests/test_forgetting_quality.py`` checks it
against a loop transcription of the spec, including data placed on grid points).
"""

from __future__ import annotations

import numpy as np

DELTA = 1e-5
EPS_CAP = 50.0
THRESHOLDS_PER_UNIT = 100  # single-threshold grid: ceil(100 * pooled range) points
INTERVAL_BUFFER = 2.0
INTERVAL_NUM = 400  # right ends, and left ends per right end
RANGE_RATIO_MIN = 0.01
_NDIAG = 2 * INTERVAL_NUM - 1  # l_ij depends (up to rounding) on i + j only: 799 diagonals
_CELLS_PER_CHUNK = 1_000_000


# ----------------------------------------------------------------------------------------------
# phi


def phi(logits, labels) -> np.ndarray:
    """LiRA's logit-scaled confidence of the true class, in float64.

    ``p = softmax(logits)`` in float64 (after subtracting the row maximum), then
    ``phi = ln(p_y + 1e-45) - ln(sum_{j != y} p_j + 1e-45)``; the wrong-class mass is summed
    directly (not ``1 - p_y``), so confident examples keep their precision.

    Args:
      logits: ``[M, E, C]`` logits of M models on E examples.
      labels: ``[E]`` integer labels in ``[0, C)``.

    Returns:
      ``[M, E]`` float64.

    Raises:
      ValueError: wrong shapes, non-integer or out-of-range labels, non-finite logits.
    """
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels)
    if z.ndim != 3:
        raise ValueError(f"phi: logits must be [models, examples, classes], got shape {z.shape}; "
                         "for one model pass logits[None]")
    m, e, c = z.shape
    if y.shape != (e,):
        raise ValueError(f"phi: labels must be [examples] = [{e}], got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"phi: labels must be integers, got dtype {y.dtype}; pass labels.astype(int)")
    if y.size and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"phi: labels must lie in [0, {c}), got [{y.min()}, {y.max()}]")
    if not np.all(np.isfinite(z)):
        raise ValueError("phi: logits have non-finite values; check the models that produced them")
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    onehot = np.arange(c)[None, :] == y[:, None]  # [E, C]
    p_true = np.take_along_axis(p, np.broadcast_to(y[None, :, None], (m, e, 1)), axis=-1)[..., 0]
    p_wrong = np.where(onehot[None], 0.0, p).sum(axis=-1)
    return np.log(p_true + 1e-45) - np.log(p_wrong + 1e-45)


# ----------------------------------------------------------------------------------------------
# grids and exact counts


def _grid_value(k, start, step, stop, num):
    """Element ``k`` of ``np.linspace(start, stop, num)``, with NumPy's arithmetic.

    NumPy computes ``k * step + start`` with ``step = (stop - start) / (num - 1)`` and sets the
    last element to ``stop``; ``num = 1`` gives ``[start]``. All arguments broadcast.
    """
    v = np.asarray(k, np.float64) * step + start
    return np.where((np.asarray(k) == num - 1) & (num > 1), stop, v)


def _count_grid(x, start, step, stop, num, strict: bool):
    """Per value, how many points of ``linspace(start, stop, num)`` are ``<= x`` (``< x`` if strict).

    The linspace is increasing; an estimate from ``(x - start) / step`` is corrected by exact
    comparisons with the grid values, so ties with grid points are decided as NumPy's grid
    decides them. ``x`` is ``[c, n]``; ``start``, ``step``, ``stop``, ``num`` are ``[c]``
    (``num`` may be 0 or 1, where ``step`` is ignored).

    Returns:
      ``[c, n]`` int64 counts in ``[0, num]``.
    """
    start, step, stop, num = (a[:, None] for a in (start, step, stop, num))

    def ok(k):  # grid point k satisfies the predicate (k assumed in [0, num))
        g = _grid_value(k, start, step, stop, num)
        return g < x if strict else g <= x

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = np.where(num > 1, (x - start) / np.where(num > 1, step, 1.0), 0.0)
    u = np.nan_to_num(u, nan=0.0, posinf=float(2**40), neginf=-float(2**40))
    cand = np.clip(np.floor(u) + 1, 0, num).astype(np.int64)
    for _ in range(2):  # rounding moves a grid point by far less than a step: one fix suffices
        k = np.maximum(cand - 1, 0)
        cand = cand - ((cand >= 1) & ~ok(k))
    for _ in range(2):
        k = np.minimum(cand, np.maximum(num - 1, 0))
        cand = cand + ((cand < num) & ok(k))
    return cand


def _eps_table(n_u: int, n_r: int, delta: float) -> np.ndarray:
    """ε of one attack for every pair of counts, both orientations, flattened.

    Entry ``[o, a, b]``: ``a`` of the ``n_u`` unlearned and ``b`` of the ``n_r`` retrained models
    are predicted to be "class X", where X is the unlearned side (``o = 0``) or the retrained
    side (``o = 1``). FNR = fraction of X not predicted X, FPR = fraction of the other side
    predicted X. Values: ``inf`` if FPR = FNR = 0; ``-inf`` (discarded) if exactly one is 0 or
    neither log term is defined; otherwise
    ``max(ln(1 - δ - FPR) - ln FNR, ln(1 - δ - FNR) - ln FPR)`` clipped at >= 0.
    """
    a = np.arange(n_u + 1, dtype=np.float64)[:, None] / n_u  # fraction of U predicted X
    b = np.arange(n_r + 1, dtype=np.float64)[None, :] / n_r  # fraction of R predicted X
    out = []
    for fnr, fpr in ((1.0 - a, b), (1.0 - b, a)):  # X = U, X = R
        fnr, fpr = np.broadcast_arrays(fnr, fpr)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.where(1 - delta - fpr > 0, np.log(np.maximum(1 - delta - fpr, 1e-300)) - np.log(fnr), np.nan)
            t2 = np.where(1 - delta - fnr > 0, np.log(np.maximum(1 - delta - fnr, 1e-300)) - np.log(fpr), np.nan)
        e = np.fmax(t1, t2)  # nan only where both are undefined
        e = np.where(np.isnan(e), -np.inf, np.maximum(e, 0.0))
        zero_fpr, zero_fnr = fpr == 0, fnr == 0
        e = np.where(zero_fpr & zero_fnr, np.inf, np.where(zero_fpr | zero_fnr, -np.inf, e))
        out.append(e.reshape(-1))
    return np.concatenate(out)


def _runs(va, vb, force):
    """Maximal runs of constant ``(va, vb)`` along axis 1, breaking around ``force`` positions.

    Returns padded ``[c, R]`` arrays: first index, last index, the run's ``va``, ``vb``, and a
    validity mask (False for padding and for runs made of forced positions).
    """
    c, n = va.shape
    start = np.ones((c, n), bool)
    start[:, 1:] = (va[:, 1:] != va[:, :-1]) | (vb[:, 1:] != vb[:, :-1]) | force[:, 1:] | force[:, :-1]
    end = np.ones((c, n), bool)
    end[:, :-1] = start[:, 1:]
    rid = np.cumsum(start, axis=1) - 1
    nruns = rid[:, -1] + 1
    r = int(nruns.max())
    e_s, p_s = np.nonzero(start)
    e_e, p_e = np.nonzero(end)
    first = np.zeros((c, r), np.int32)
    last = np.full((c, r), -(10**6), np.int32)
    ra = np.zeros((c, r), np.int32)
    rb = np.zeros((c, r), np.int32)
    bad = np.ones((c, r), bool)
    first[e_s, rid[e_s, p_s]] = p_s
    last[e_e, rid[e_e, p_e]] = p_e
    ra[e_s, rid[e_s, p_s]] = va[e_s, p_s]
    rb[e_s, rid[e_s, p_s]] = vb[e_s, p_s]
    bad[e_s, rid[e_s, p_s]] = force[e_s, p_s]
    return first, last, ra, rb, ~bad


def _row_hist(idx, n):
    """Per row of ``idx`` (``[c, k]`` ints in ``[0, n)``), the counts of each value: ``[c, n]``."""
    c = idx.shape[0]
    flat = (np.arange(c, dtype=np.int64)[:, None] * n + idx).reshape(-1)
    return np.bincount(flat, minlength=c * n).reshape(c, n)


def _max_per_example(values, groups, c):
    out = np.full(c, -np.inf)
    if values.size:
        np.maximum.at(out, groups, values)
    return out


# ----------------------------------------------------------------------------------------------
# the two attacks on one chunk of examples


def _single_threshold(u, r, x_is_u, table, n_u, n_r):
    """Best ε of the single-threshold attack per example (``-inf`` if every threshold is discarded).

    Thresholds ``linspace(pooled min, pooled max, ceil(100 * pooled range))``; predict the
    positive class (larger median; ``x_is_u`` says it is the unlearned side) iff ``phi >= t``.
    """
    c = u.shape[0]
    lo = np.minimum(u.min(1), r.min(1))
    hi = np.maximum(u.max(1), r.max(1))
    num = np.ceil((hi - lo) * THRESHOLDS_PER_UNIT).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(num > 1, (hi - lo) / np.maximum(num - 1, 1), 0.0)
    total = int(num.sum())
    best = np.full(c, -np.inf)
    if total == 0:
        return best
    offs = np.concatenate([[0], np.cumsum(num)[:-1]])
    ex = np.repeat(np.arange(c), num)  # example of each flat threshold
    ge = []
    for side in (u, r):  # count of the side's models with phi >= t_k, per flat threshold k
        p = _count_grid(side, lo, step, hi, num, strict=False)  # thresholds <= phi
        keep = p < num[:, None]
        h = np.bincount((offs[:, None] + p)[keep], minlength=total)
        cs = np.cumsum(h)
        base = np.where(num > 0, cs[np.minimum(offs, total - 1)] - h[np.minimum(offs, total - 1)], 0)
        le = cs - np.repeat(base, num)  # models with p <= k, i.e. phi < t_k
        ge.append(side.shape[1] - le)
    orient = np.where(x_is_u, 0, 1)[ex]
    idx = orient * ((n_u + 1) * (n_r + 1)) + ge[0] * (n_r + 1) + ge[1]
    return _max_per_example(table[idx], ex, c)


def _interval(u, r, a_is_u, table, n_u, n_r):
    """Best ε of the interval attack per example (``-inf`` if every interval is discarded).

    A = the side with the smaller range ``w`` (``a_is_u``); predict A iff ``l <= phi <= r`` with
    ``r_i = linspace(min_A + w - 2, max_A + 2, 400)[i]`` and
    ``l_ij = linspace(r_i - w - 2, r_i - w + 2, 400)[j]``.

    Counts of models ``<= r_i`` are exact per row. ``l_ij`` equals ``min_A - 4 + (i + j) * 4/399``
    up to rounding, so the count of models ``< l_ij`` depends on the diagonal ``i + j`` except
    for data points within rounding distance of a grid diagonal (always ``min_A``, on diagonal
    399); those diagonals are evaluated cell by cell with the exact grid values. The rest is
    scored on the distinct (row-count, diagonal-count) pairs that some cell reaches.
    """
    c = u.shape[0]
    nn = INTERVAL_NUM
    a_min = np.where(a_is_u, u.min(1), r.min(1))
    a_max = np.where(a_is_u, u.max(1), r.max(1))
    w = np.minimum(u.max(1) - u.min(1), r.max(1) - r.min(1))
    r_start = (a_min + w) - INTERVAL_BUFFER
    r_stop = a_max + INTERVAL_BUFFER
    r_step = (r_stop - r_start) / (nn - 1)
    nums = np.full(c, nn)
    r_grid = _grid_value(np.arange(nn)[None, :], r_start[:, None], r_step[:, None], r_stop[:, None], nn)  # [c, 400]
    t = r_grid - w[:, None]
    l_lo = t - INTERVAL_BUFFER  # [c, 400] start of each row's left grid
    l_hi = t + INTERVAL_BUFFER
    l_step = (l_hi - l_lo) / (nn - 1)

    # models <= r_i, per row: [c, 400] for U and for R
    le = []
    for side in (u, r):
        q = _count_grid(side, r_start, r_step, r_stop, nums, strict=True)  # grid points < phi
        le.append(np.cumsum(_row_hist(q, nn + 1), axis=1)[:, :nn])

    # models < l on each diagonal (unambiguous points), and the ambiguous points
    l0 = l_lo[:, 0]
    dstep = 2 * INTERVAL_BUFFER / (nn - 1)
    scale = np.maximum(np.maximum(np.abs(u).max(1), np.abs(r).max(1)), np.abs(l0)) + 8.0
    tol = 1e-9 * np.maximum(scale, 1.0)  # in steps; rounding moves grid points by ~1e-13 * scale
    lt, amb_pts = [], []
    for s, side in enumerate((u, r)):
        uu = (side - l0[:, None]) / dstep
        m = np.rint(uu)
        amb = (np.abs(uu - m) <= tol[:, None]) & (m >= 0) & (m <= _NDIAG - 1)
        key = np.where(amb, m + 1, np.floor(uu) + 1)
        key = np.clip(key, 0, _NDIAG).astype(np.int64)
        lt.append(np.cumsum(_row_hist(key, _NDIAG + 1), axis=1)[:, :_NDIAG])
        e_a, k_a = np.nonzero(amb)
        amb_pts.append((e_a, m[e_a, k_a].astype(np.int64), side[e_a, k_a], np.full(e_a.size, s)))
    amb_e = np.concatenate([p[0] for p in amb_pts])
    amb_m = np.concatenate([p[1] for p in amb_pts])
    amb_x = np.concatenate([p[2] for p in amb_pts])
    amb_s = np.concatenate([p[3] for p in amb_pts])
    force = np.zeros((c, _NDIAG), bool)
    force[amb_e, amb_m] = True

    orient = np.where(a_is_u, 0, 1)
    off = (orient * ((n_u + 1) * (n_r + 1))).astype(np.int32)[:, None, None]

    # 1) every cell off the ambiguous diagonals, on the distinct (row run, diagonal run) pairs
    #    that some cell (i, i + j) reaches: at most (2N + 1)^2, and at most 400 x 799
    best = np.full(c, -np.inf)
    ri0, ri1, rua, rra, rok = _runs(le[0], le[1], np.zeros((c, nn), bool))
    di0, di1, dua, dra, dok = _runs(lt[0], lt[1], force)
    rr, dd = ri0.shape[1], di0.shape[1]
    per = max(1, _CELLS_PER_CHUNK // (rr * dd))
    ri1 = ri1 + (nn - 1)
    stride = np.int32(n_r + 1)
    for s0 in range(0, c, per):
        sl = slice(s0, s0 + per)
        keep = ((di1[sl, None, :] >= ri0[sl, :, None]) & (di0[sl, None, :] <= ri1[sl, :, None])
                & rok[sl, :, None] & dok[sl, None, :])
        cu = np.maximum(rua[sl, :, None] - dua[sl, None, :], 0)
        cr = np.maximum(rra[sl, :, None] - dra[sl, None, :], 0)
        cu *= stride
        cu += cr
        cu += off[sl]
        val = table[cu]
        val[~keep] = -np.inf
        best[sl] = val.reshape(val.shape[0], -1).max(axis=1)

    # 2) cells on diagonals with ambiguous points, with the exact left grid values
    if amb_e.size:
        gkey, g_of = np.unique(amb_e * _NDIAG + amb_m, return_inverse=True)
        g_e, g_m = gkey // _NDIAG, gkey % _NDIAG
        rows = np.arange(nn)[None, :]
        j = g_m[:, None] - rows  # [G, 400]
        cell_ok = (j >= 0) & (j <= nn - 1)
        jc = np.clip(j, 0, nn - 1)
        lval = _grid_value(jc, l_lo[g_e], l_step[g_e], l_hi[g_e], nn)  # exact l_ij, [G, 400]
        below = amb_x[:, None] < lval[g_of]  # point < l: outside on the left
        corr = np.zeros((2, gkey.size, nn), np.int64)
        np.add.at(corr, (amb_s[:, None], g_of[:, None], rows), below.astype(np.int64))
        cu = np.maximum(le[0][g_e] - (lt[0][g_e, g_m][:, None] + corr[0]), 0)
        cr = np.maximum(le[1][g_e] - (lt[1][g_e, g_m][:, None] + corr[1]), 0)
        val = table[off[g_e, 0] + cu * (n_r + 1) + cr]
        val = np.where(cell_ok, val, -np.inf).max(axis=1)
        best = np.maximum(best, _max_per_example(val, g_e, c))
    return best


# ----------------------------------------------------------------------------------------------
# public metrics


def _pools(phi_unlearned, phi_retrained):
    u = np.asarray(phi_unlearned, np.float64)
    r = np.asarray(phi_retrained, np.float64)
    for name, a in (("phi_unlearned", u), ("phi_retrained", r)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be [models, examples], got shape {a.shape}")
        if a.shape[0] < 2:
            raise ValueError(f"{name} has {a.shape[0]} model(s); the attacks need at least 2 per side")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has non-finite values; compute phi with forgetting_quality.phi")
    if u.shape[1] != r.shape[1]:
        raise ValueError(f"phi_unlearned has {u.shape[1]} examples and phi_retrained {r.shape[1]}; "
                         "score the same forget examples on both sides")
    return u, r


def _orientation(ut, rt):
    """Per example (``ut`` ``[E, N]``, ``rt`` ``[E, N']``): retrained is the positive class
    (strictly larger median), the interval's side A is the unlearned one, the range-ratio rule."""
    retrained_pos = np.median(rt, axis=1) > np.median(ut, axis=1)
    rng_u = ut.max(1) - ut.min(1)
    rng_r = rt.max(1) - rt.min(1)
    pos_rng = np.where(retrained_pos, rng_r, rng_u)
    neg_rng = np.where(retrained_pos, rng_u, rng_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.minimum(rng_u, rng_r) / np.maximum(rng_u, rng_r)
    range_rule = ratio < RANGE_RATIO_MIN  # 0/0 is NaN: not caught, as in metric.py
    # interval side A: the smaller range; on a tie metric.py takes the negative class
    a_is_pos = pos_rng < neg_rng
    a_is_u = np.where(a_is_pos, ~retrained_pos, retrained_pos)
    return retrained_pos, a_is_u, range_rule


def example_epsilons(phi_unlearned, phi_retrained, delta: float = DELTA) -> dict:
    """Per-example ε of the competition's attacks (unlearned vs retrained models).

    For each example s, with u = its phi under the N unlearned models and r under the N'
    retrained ones (N and N' may differ; rates are fractions of each side):

    * positive class = the side with the larger median (retrained iff its median is strictly
      larger, as in the official ``metric.py``);
    * if ``min(range) / max(range) < 0.01``: ``eps = 50`` (one side is far peakier); two
      zero ranges are not caught by this rule (0/0), as in ``metric.py``;
    * otherwise ε = the largest ε over every threshold of both attacks (single threshold and
      interval, see :func:`_single_threshold` and :func:`_interval`), where per threshold
      FPR = FNR = 0 gives ``inf``, exactly one zero discards the threshold, and otherwise
      ``max(ln(1 - δ - FPR) - ln FNR, ln(1 - δ - FNR) - ln FPR)`` clipped at >= 0;
    * ``eps`` is clipped to [0, 50]; an example where every threshold was discarded (only
      degenerate pools, e.g. the same constant on both sides) gets 0 and is flagged.

    Args:
      phi_unlearned: ``[N, E]`` phi of N unlearned models on E forget examples.
      phi_retrained: ``[N', E]`` phi of N' retrained models on the same examples.
      delta: the δ of (ε, δ).

    Returns:
      dict of ``[E]`` arrays: ``eps`` (float64 in [0, 50]); ``eps_threshold`` and
      ``eps_interval`` (each attack's best ε clipped to [0, 50], NaN where all its thresholds
      were discarded; computed for every example, before the range-ratio rule);
      ``range_rule`` (bool, the ratio rule set 50); ``no_valid_attack`` (bool);
      ``retrained_positive`` (bool, the median rule's choice).

    Raises:
      ValueError: shapes differ, fewer than 2 models a side, or non-finite phi.
    """
    u, r = _pools(phi_unlearned, phi_retrained)
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    n_u, n_r = u.shape[0], r.shape[0]
    n_e = u.shape[1]
    table = _eps_table(n_u, n_r, delta)
    ut, rt = np.ascontiguousarray(u.T), np.ascontiguousarray(r.T)  # [E, N]
    retrained_pos, a_is_u, range_rule = _orientation(ut, rt)

    e_thr = np.empty(n_e)
    e_int = np.empty(n_e)
    chunk = max(1, 4096 // max(1, (n_u + n_r) // 64))
    for s in range(0, n_e, chunk):
        sl = slice(s, s + chunk)
        e_thr[sl] = _single_threshold(ut[sl], rt[sl], ~retrained_pos[sl], table, n_u, n_r)
        e_int[sl] = _interval(ut[sl], rt[sl], a_is_u[sl], table, n_u, n_r)
    best = np.maximum(e_thr, e_int)
    no_valid = ~np.isfinite(best) & (best < 0)  # -inf: every threshold discarded
    eps = np.where(range_rule, EPS_CAP, np.clip(np.where(no_valid, 0.0, best), 0.0, EPS_CAP))

    def fam(x):
        return np.where(np.isneginf(x), np.nan, np.clip(x, 0.0, EPS_CAP))

    return {"eps": eps, "eps_threshold": fam(e_thr), "eps_interval": fam(e_int),
            "range_rule": range_rule, "no_valid_attack": no_valid & ~range_rule,
            "retrained_positive": retrained_pos}


def example_points(eps, bin_width: float = 0.5, num_bins: int = 13) -> np.ndarray:
    """Points per example: ``H = 2 / 2^n`` with ``n = 1 + floor(eps / bin_width)``, 0 past the last bin.

    Args:
      eps: ``[E]`` per-example ε (``inf`` allowed).
      bin_width: width of a bin (0.5 in the competition).
      num_bins: bins on ``[0, num_bins * bin_width)``; ε at or past the end scores 0.

    Returns:
      ``[E]`` float64 in {1, 1/2, 1/4, ..., 0}.
    """
    e = np.asarray(eps, np.float64)
    if e.ndim != 1:
        raise ValueError(f"eps must be [examples], got shape {e.shape}")
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("eps has NaN or negative values; pass example_epsilons(...)['eps']")
    if not bin_width > 0 or int(num_bins) < 1:
        raise ValueError(f"bin_width must be > 0 and num_bins >= 1, got {bin_width}, {num_bins}")
    with np.errstate(invalid="ignore"):
        n = np.where(np.isinf(e), np.inf, 1.0 + np.floor(e / bin_width))
    return np.where(n <= num_bins, 2.0 / np.exp2(np.minimum(n, num_bins + 1)), 0.0)


def forgetting_quality(eps, bin_width: float = 0.5, num_bins: int = 13) -> float:
    """The competition's forgetting quality ``F = mean_s H(s)``, ``H = 2 / 2^n(s)``.

    ``n(s) = 1 + floor(eps_s / bin_width)``; ε past the last bin (``num_bins * bin_width``,
    6.5 by default, as in the write-up), including ∞ and the cap 50, scores 0.

    Args:
      eps: ``[E]`` per-example ε, e.g. ``example_epsilons(...)["eps"]``.
      bin_width: bin width (0.5).
      num_bins: number of bins (13).

    Returns:
      F in [0, 1] (1 = every example in the first bin).
    """
    h = example_points(eps, bin_width, num_bins)
    if h.size == 0:
        raise ValueError("eps is empty; score at least one forget example")
    return float(h.mean())


def _mean_acc(x, name):
    a = np.asarray(x, np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a non-empty array of finite per-model accuracies")
    return float(a.mean())


def final_score(F, retain_acc_u, retain_acc_r, test_acc_u, test_acc_r) -> float:
    """Utility-adjusted score ``F * (RA_U / RA_R) * (TA_U / TA_R)`` (not clipped).

    Args:
      F: forgetting quality.
      retain_acc_u: ``[N]`` retain accuracy of each unlearned model (averaged here).
      retain_acc_r: ``[N']`` retain accuracy of each retrained model.
      test_acc_u: ``[N]`` test accuracy of each unlearned model.
      test_acc_r: ``[N']`` test accuracy of each retrained model.

    Returns:
      The final score (float).
    """
    ra_u, ra_r = _mean_acc(retain_acc_u, "retain_acc_u"), _mean_acc(retain_acc_r, "retain_acc_r")
    ta_u, ta_r = _mean_acc(test_acc_u, "test_acc_u"), _mean_acc(test_acc_r, "test_acc_r")
    if ra_r <= 0 or ta_r <= 0:
        raise ValueError(f"retrained accuracies must be > 0 (retain {ra_r}, test {ta_r}); check the retrained pool")
    return float(F) * (ra_u / ra_r) * (ta_u / ta_r)


def _permutation(key_or_seed, n):
    if isinstance(key_or_seed, (int, np.integer)):
        return np.random.default_rng(int(key_or_seed)).permutation(n)
    import jax  # a JAX PRNG key

    return np.asarray(jax.random.permutation(key_or_seed, n))


def retrain_floor(phi_retrained, key_or_seed=0, split=None, *, delta: float = DELTA,
                  bin_width: float = 0.5, num_bins: int = 13, details: bool = False):
    """The retrain-vs-retrain floor: F of one half of a retrained pool against the other half.

    Two independent sets of retrained models are the perfect unlearner, but their F is not 1
    (about 0.16-0.19 for Gaussian phi, FORGETTING_QUALITY.md): this is the best any method can
    score at that N. The floor at N models per side needs **2N** retrained models; with 2N + 1
    the last permuted model is left out.

    Args:
      phi_retrained: ``[M, E]`` phi of M >= 4 retrained models.
      key_or_seed: an int seed (NumPy ``default_rng``) or a JAX PRNG key for the random split.
      split: optional explicit split instead of a random one: a boolean ``[M]`` mask of the
        first half (the rest is the second), or a pair ``(idx_a, idx_b)`` of index arrays.
      delta, bin_width, num_bins: as in :func:`example_epsilons` / :func:`forgetting_quality`.
      details: return a dict instead of F.

    Returns:
      F (float), or with ``details`` ``{"F", "eps", "index_a", "index_b", "n_per_side"}``.
    """
    r = np.asarray(phi_retrained, np.float64)
    if r.ndim != 2:
        raise ValueError(f"phi_retrained must be [models, examples], got shape {r.shape}")
    m = r.shape[0]
    if split is None:
        if m < 4:
            raise ValueError(f"retrain_floor needs at least 4 retrained models (2 per side), got {m}")
        perm = _permutation(key_or_seed, m)
        half = m // 2
        ia, ib = np.sort(perm[:half]), np.sort(perm[half:2 * half])
    elif isinstance(split, tuple) and len(split) == 2:
        ia, ib = (np.asarray(s, np.int64).reshape(-1) for s in split)
        if np.intersect1d(ia, ib).size:
            raise ValueError("retrain_floor: the two halves of split share models; pass disjoint index arrays")
    else:
        mask = np.asarray(split)
        if mask.dtype != bool or mask.shape != (m,):
            raise ValueError(f"split must be a bool mask [{m}] or a pair of index arrays, got {mask.dtype} {mask.shape}")
        ia, ib = np.nonzero(mask)[0], np.nonzero(~mask)[0]
    res = example_epsilons(r[ia], r[ib], delta)
    f = forgetting_quality(res["eps"], bin_width, num_bins)
    if not details:
        return f
    return {"F": f, "eps": res["eps"], "index_a": ia, "index_b": ib, "n_per_side": (ia.size, ib.size)}


def score_pool(phi_unlearned, phi_retrained, retain_acc_u=None, retain_acc_r=None, test_acc_u=None,
               test_acc_r=None, *, delta: float = DELTA, bin_width: float = 0.5, num_bins: int = 13) -> dict:
    """Forgetting quality, final score and an ε summary for one pool.

    Args:
      phi_unlearned: ``[N, E]`` phi of the unlearned models on the forget examples.
      phi_retrained: ``[N', E]`` phi of the retrained models.
      retain_acc_u, retain_acc_r, test_acc_u, test_acc_r: per-model accuracies ``[N]`` / ``[N']``;
        all four, or none (then ``final_score`` is None).
      delta, bin_width, num_bins: as in :func:`example_epsilons` / :func:`forgetting_quality`.

    Returns:
      ``{"F", "final_score", "eps_mean", "eps_median", "eps_hist", "bin_edges",
      "n_models_unlearned", "n_models_retrained", "n_examples", "n_range_rule",
      "n_no_valid_attack", "eps"}``: ``eps_hist`` has ``num_bins + 1`` counts, one per bin and
      the last for ε at or past the end (they score 0); ``bin_edges`` the ``num_bins + 1`` edges.
    """
    res = example_epsilons(phi_unlearned, phi_retrained, delta)
    eps = res["eps"]
    f = forgetting_quality(eps, bin_width, num_bins)
    accs = (retain_acc_u, retain_acc_r, test_acc_u, test_acc_r)
    if all(a is None for a in accs):
        fs = None
    elif any(a is None for a in accs):
        raise ValueError("score_pool: pass all four accuracy arrays (retain/test, unlearned/retrained) or none")
    else:
        fs = final_score(f, *accs)
    n = np.minimum(np.floor(eps / bin_width), num_bins).astype(np.int64)  # bin index, num_bins = past the end
    return {"F": f, "final_score": fs, "eps_mean": float(eps.mean()), "eps_median": float(np.median(eps)),
            "eps_hist": np.bincount(n, minlength=num_bins + 1).tolist(),
            "bin_edges": (np.arange(num_bins + 1) * bin_width).tolist(),
            "n_models_unlearned": int(np.shape(phi_unlearned)[0]),
            "n_models_retrained": int(np.shape(phi_retrained)[0]),
            "n_examples": int(eps.size), "n_range_rule": int(res["range_rule"].sum()),
            "n_no_valid_attack": int(res["no_valid_attack"].sum()), "eps": eps}


# ----------------------------------------------------------------------------------------------
# U-LiRA


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted 1/2).

    Args:
      scores: ``[n]`` higher = more likely positive.
      labels: ``[n]`` bool, True = positive.

    Returns:
      AUC in [0, 1] (NaN if one class is empty).
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels, bool).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    # average ranks (1-based) over ties
    first = np.ones(ss.size, bool)
    first[1:] = ss[1:] != ss[:-1]
    gid = np.cumsum(first) - 1
    starts = np.nonzero(first)[0]
    ends = np.append(starts[1:], ss.size)  # exclusive
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(ss.size)
    ranks[order] = avg[gid]
    u_stat = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_stat / (n_pos * n_neg))


def _gauss_fit(x, mask, pooled, used):
    """Per-example mean and variance (ddof = 1) of ``x[mask]`` along axis 0.

    With ``pooled``, one variance for all examples: the within-example sums of squares of the
    ``used`` examples over their summed degrees of freedom.
    """
    n = mask.sum(0).astype(np.float64)
    mu = np.where(mask, x, 0.0).sum(0) / np.maximum(n, 1)
    ss = np.where(mask, (x - mu) ** 2, 0.0).sum(0)
    if pooled:
        dof = float((n[used] - 1).sum())
        var = np.full(x.shape[1], ss[used].sum() / dof if dof > 0 else np.nan)
    else:
        var = ss / np.maximum(n - 1, 1)
    return mu, var


def ulira(phi_shadow, in_mask, out_mask, phi_target, target_unlearned, target_mask=None,
          pooled_variance: bool = True, aggregate: str = "example") -> dict:
    """U-LiRA (Hayes et al. 2024): per-example Gaussian likelihood ratio, unlearned vs retrained.

    Per example x: IN(x) = phi of the unlearned shadows whose forget set held x (``in_mask``),
    OUT(x) = phi of shadows never trained on x (``out_mask``). Fit ``N(mu_in, var_in)`` and
    ``N(mu_out, var_out)`` (sample mean; variance with ddof = 1, per example or pooled over
    examples: the within-example sums of squares over the summed degrees of freedom). A target
    model T's score on x is
    ``Lambda = log N(phi_T(x); mu_in, var_in) - log N(phi_T(x); mu_out, var_out)``, and T is
    called "unlearned" on x iff ``Lambda > 0``.

    ``aggregate="example"`` (default, the paper's setting): every scored (target, example)
    pair is one decision; ``"model"``: a target's Lambda is averaged over its scored examples
    and each target model is one decision. Accuracy is balanced (the mean of the accuracy on
    unlearned and on retrained decisions, which is the plain accuracy when the classes are
    balanced, e.g. equal numbers of unlearned and retrained targets and ``target_mask=None``);
    AUC is over the Lambda scores.

    Args:
      phi_shadow: ``[K, E]`` phi of the K shadow models on E examples.
      in_mask: ``[K, E]`` bool, shadow k unlearned x (x in its forget set S_k).
      out_mask: ``[K, E]`` bool, shadow k never trained on x.
      phi_target: ``[T, E]`` phi of the T target models.
      target_unlearned: ``[T]`` bool, True = unlearned target, False = retrained.
      target_mask: ``[T, E]`` bool, which (target, example) pairs to score (e.g. an unlearned
        target's forget examples, a retrained target's held-out ones); None = all.
      pooled_variance: pool the variances over examples (helps at K <= 8).
      aggregate: ``"example"`` or ``"model"``.

    Returns:
      ``{"accuracy", "auc", "n_pairs", "n_unlearned", "n_retrained", "scores", "labels"}``:
      ``n_pairs`` the decisions scored (pairs or models), ``scores`` / ``labels`` the Lambda
      values and classes behind the accuracy and AUC.

    Raises:
      ValueError: shapes disagree, an example scored with fewer than 2 IN or OUT shadows
        (1 each with ``pooled_variance``), or a class without decisions.
    """
    sh = np.asarray(phi_shadow, np.float64)
    tg = np.asarray(phi_target, np.float64)
    im, om = np.asarray(in_mask, bool), np.asarray(out_mask, bool)
    y = np.asarray(target_unlearned, bool)
    if sh.ndim != 2 or im.shape != sh.shape or om.shape != sh.shape:
        raise ValueError(f"phi_shadow, in_mask, out_mask must share a [K, E] shape, got {sh.shape}, {im.shape}, {om.shape}")
    if tg.ndim != 2 or tg.shape[1] != sh.shape[1] or y.shape != (tg.shape[0],):
        raise ValueError(f"phi_target must be [T, {sh.shape[1]}] and target_unlearned [T], got {tg.shape}, {y.shape}")
    tm = np.ones(tg.shape, bool) if target_mask is None else np.asarray(target_mask, bool)
    if tm.shape != tg.shape:
        raise ValueError(f"target_mask must be {tg.shape}, got {tm.shape}")
    if (im & om).any():
        raise ValueError("in_mask and out_mask overlap; a shadow is either IN or OUT for an example")
    if not (np.all(np.isfinite(sh[im | om])) and np.all(np.isfinite(tg[tm]))):
        raise ValueError("phi_shadow / phi_target have non-finite values where they are used")
    if aggregate not in ("example", "model"):
        raise ValueError(f"aggregate must be 'example' or 'model', got {aggregate!r}")
    used = tm.any(0)
    need = 1 if pooled_variance else 2
    for name, m in (("IN", im), ("OUT", om)):
        short = used & (m.sum(0) < need)
        if short.any():
            raise ValueError(f"ulira: {int(short.sum())} scored example(s) have fewer than {need} {name} shadows; "
                             "train more shadows or drop those examples from target_mask")
    mu_i, var_i = _gauss_fit(sh, im, pooled_variance, used)
    mu_o, var_o = _gauss_fit(sh, om, pooled_variance, used)
    if not (np.all(var_i[used] > 0) and np.all(var_o[used] > 0)):
        raise ValueError("ulira: a fitted variance is 0 or undefined (identical shadow phi, or one shadow "
                         "per example with pooled_variance); train more shadows")

    def logpdf(x, mu, var):
        return -0.5 * np.log(2 * np.pi * var) - (x - mu) ** 2 / (2 * var)

    with np.errstate(divide="ignore", invalid="ignore"):
        lam = logpdf(tg, mu_i, var_i) - logpdf(tg, mu_o, var_o)  # [T, E]
    if aggregate == "example":
        t_idx, _ = np.nonzero(tm)
        scores, labels = lam[tm], y[t_idx]
    else:
        cnt = tm.sum(1)
        keep = cnt > 0
        scores = np.where(tm, lam, 0.0).sum(1)[keep] / cnt[keep]
        labels = y[keep]
    n_un, n_re = int(labels.sum()), int((~labels).sum())
    if n_un == 0 or n_re == 0:
        raise ValueError(f"ulira: {n_un} unlearned and {n_re} retrained decisions; both classes are needed")
    pred = scores > 0
    acc = 0.5 * (pred[labels].mean() + (~pred[~labels]).mean())
    return {"accuracy": float(acc), "auc": roc_auc(scores, labels), "n_pairs": int(labels.size),
            "n_unlearned": n_un, "n_retrained": n_re, "scores": scores, "labels": labels}
