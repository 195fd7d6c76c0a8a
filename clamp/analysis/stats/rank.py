"""Rank statistics of phase times: the primary test, and the time ratio with the interval that inverts it.

Why this file exists: with 3 to 8 runs per arm, some never crossing, a test and an interval are
only honest if they are exact (or shown to hold by simulation) and answer the same question.  The
primary test is a permutation test of Gehan's generalised Wilcoxon statistic; the effect it comes
with is the time ratio that makes the two arms indistinguishable by that same statistic (a
Hodges–Lehmann estimate on log times), and its interval is the set of ratios the test does not
reject.  Without censoring that is the exact Mann–Whitney interval for a shift in log time; its
coverage is guaranteed at the level it states, and the level is the nominal one only when an exact
test with these numbers of runs can reach it (3 vs 3 runs: 90 % at most).

- :func:`gehan_scores` / :func:`gehan_test`: the statistic and its permutation p (exact over every
  relabelling up to :data:`N_PERM` of them, else a seeded Monte Carlo estimate).
- :func:`coarsen` / :func:`primary_test`: each run cut at its administrative horizon first (see
  :mod:`clamp.analysis.stats.compare`), which keeps the size in every design ``clamp bench --stats`` checks.
- :func:`time_ratio`: the estimate and its interval, every run at its own planned follow-up.
- :func:`signed_rank_interval`: the same for paired (same-seed) runs: median of Walsh averages of log
  ratios, with the exact signed-rank interval.
- :func:`rank_level`: the highest confidence an exact rank interval reaches with ``n_a`` vs ``n_b`` runs.

Pure numpy; no scipy statistic is used because none of them handles censoring by ranks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from clamp.analysis.stats.survival import as_sample

N_PERM = 20_000  # permutation resamples: exact enumeration up to 8 vs 8 runs (12,870 relabellings)


def min_rank_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p-value an exact rank test can give with ``n_a`` vs ``n_b`` runs.

    Example:
        >>> round(min_rank_p(5, 5), 4), min_rank_p(3, 3)
        (0.0079, 0.1)
    """
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def rank_level(n_a: int, n_b: int, confidence: float) -> tuple[float, float]:
    """``(level, alpha)``: the confidence an exact rank interval can guarantee, and the p it rejects at.

    The nominal ``confidence`` when an exact test with these numbers of runs can reach p <= 1 - confidence;
    otherwise the highest level there is, 1 - (its smallest p), rejecting only at that smallest p.

    Example:
        >>> rank_level(5, 5, 0.95), rank_level(3, 3, 0.95)
        ((0.95, 0.050000000000000044), (0.9, 0.1))
    """
    alpha = 1.0 - confidence
    floor = min_rank_p(n_a, n_b)
    return (confidence, alpha) if floor <= alpha + 1e-12 else (1.0 - floor, floor)


def coarsen(times: ArrayLike, events: ArrayLike, limits: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Each run as it is known at its limit: a crossing up to the limit stays, anything later is "not by the limit".

    A run censored before its limit stays censored there (it ended early: its order against a later
    crossing is unknown).

    Example:
        >>> coarsen([5, 20, 8], [True, True, False], [10, 10, 10])
        (array([ 5., 10.,  8.]), array([ True, False, False]))
    """
    t, e = as_sample(times, events)
    lim = np.broadcast_to(np.asarray(limits, dtype=float), t.shape)
    event = e & (t <= lim)
    return np.where(event, t, np.minimum(t, lim)), event


def gehan_scores(times: ArrayLike, events: ArrayLike) -> NDArray[np.float64]:
    """Each run's Gehan score: how many runs certainly crossed after it, minus how many certainly before it.

    Run i certainly crossed before run j when i crossed (event) and either j crossed later or j is
    censored at or after i's time ("not crossed by c" means j's crossing comes after c).  Pairs whose
    order is unknown (both censored, a tie, a censoring before the other's crossing) count 0.  The
    generalised Wilcoxon statistic of a group is the sum of its runs' scores.

    Example:
        >>> gehan_scores([1, 2, 3], [True, True, False]).tolist()
        [2.0, 0.0, -2.0]
    """
    t, e = as_sample(times, events)
    return _scores(t[:, None], e)[:, 0]


def _scores(t: NDArray[np.float64], e: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Gehan scores of several pooled samples at once: ``t`` ``[n, E]`` (one column per sample), ``e`` ``[n]``."""
    ti, tj = t[:, None, :], t[None, :, :]
    ei, ej = e[:, None, None], e[None, :, None]
    before = ei & np.where(ej, ti < tj, ti <= tj)  # [i, j, E]: i certainly before j
    return (before.sum(1) - before.sum(0)).astype(float)


_COMBOS: dict[tuple[int, int], NDArray[np.float64]] = {}


def _labellings(n: int, k: int) -> NDArray[np.float64]:
    """Every way to pick ``k`` of ``n`` runs, as a 0/1 matrix ``[C(n, k), n]`` (cached)."""
    key = (n, k)
    if key not in _COMBOS:
        idx = np.array(list(itertools.combinations(range(n), k)), dtype=np.intp).reshape(-1, k)
        m = np.zeros((idx.shape[0], n))
        np.put_along_axis(m, idx, 1.0, axis=1)
        _COMBOS[key] = m
    return _COMBOS[key]


def _p_values(scores: NDArray[np.float64], k: int, seed: int) -> tuple[NDArray[np.float64], str]:
    """Two-sided permutation p of the first ``k`` runs' summed score, for every column of ``scores`` ``[n, E]``."""
    n = scores.shape[0]
    observed = scores[:k].sum(0)
    if math.comb(n, k) <= N_PERM:
        stat = _labellings(n, k) @ scores  # [C, E]
        le = np.mean(stat <= observed + 1e-9, axis=0)
        ge = np.mean(stat >= observed - 1e-9, axis=0)
        how = "exact"
    else:
        rng = np.random.default_rng(seed)
        picks = np.argsort(rng.random((N_PERM, n)), axis=1)[:, :k]  # N_PERM random relabellings, seeded
        le = np.ones(scores.shape[1])
        ge = np.ones(scores.shape[1])
        for start in range(0, N_PERM, 2_000):
            stat = scores[picks[start:start + 2_000]].sum(1)  # [chunk, E]
            le += np.sum(stat <= observed + 1e-9, axis=0)
            ge += np.sum(stat >= observed - 1e-9, axis=0)
        le, ge = le / (1 + N_PERM), ge / (1 + N_PERM)
        how = f"permutation ({N_PERM:,} random relabellings)"
    return np.minimum(1.0, 2 * np.minimum(le, ge)), how


def gehan_test(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
               seed: int = 0) -> tuple[float, str]:
    """Two-sided permutation test of the Gehan (generalised Wilcoxon) statistic.

    Exact (every relabelling of the runs) when there are at most :data:`N_PERM` of them, else a
    seeded Monte Carlo estimate; two-sided p = twice the smaller tail, capped at 1 (scipy's
    convention for its rank tests).  Valid when, under the null, the runs' labels are exchangeable
    -- which is why the primary test first cuts the data at a horizon that does not depend on the
    arm (:func:`primary_test`).  Without censoring it is the exact Mann–Whitney test.

    Example:
        >>> p, how = gehan_test([1, 2, 3, 4, 5], [True] * 5, [6, 7, 8, 9, 10], [True] * 5)
        >>> round(p, 4), how
        (0.0079, 'exact')
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if at.size == 0 or bt.size == 0:
        return math.nan, "no runs"
    scores = _scores(np.concatenate([at, bt])[:, None], np.concatenate([ae, be]))
    p, how = _p_values(scores, at.size, seed)
    return float(p[0]), how


def primary_test(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
                 a_limits: ArrayLike = math.inf, b_limits: ArrayLike = math.inf,
                 seed: int = 0) -> tuple[float, str, int]:
    """The primary test: every run cut at its limit from the design, then :func:`gehan_test`.

    Args:
        a_times, a_events, b_times, b_events: the two arms' phase times (decidable, see :mod:`clamp.phase`).
        a_limits, b_limits: each run's administrative horizon (a number, or one per run): the planned
            budget the two arms share minus the rule's span W (minus the run's reference time for a
            ``relative_to`` rule).  Never a run's own early stop or a late trigger.
        seed: seeds the Monte Carlo p when the exact enumeration is too large.

    Returns:
        ``(p, method, n_ranked)``: ``n_ranked`` runs crossed by their limit (ordered by their times);
        the others are "not by the limit".

    Example:
        >>> p, how, ranked = primary_test([1, 2, 3], [True] * 3, [4, 5, 9], [True] * 3, a_limits=6, b_limits=6)
        >>> round(p, 3), how, ranked
        (0.1, 'exact', 5)
    """
    ay, ae = coarsen(a_times, a_events, a_limits)
    by, be = coarsen(b_times, b_events, b_limits)
    p, how = gehan_test(ay, ae, by, be, seed=seed)
    return p, how, int(ae.sum() + be.sum())


@dataclass(frozen=True, kw_only=True)
class TimeRatio:
    """The time ratio of arm A to arm B (below 1: A sooner) with the interval that inverts the rank test.

    ``ratio`` is NaN when no single ratio balances the two arms (e.g. every run of B is censored
    before A's runs could be moved past it): ``note`` says why, and ``low``/``high`` still bound it.
    ``low`` 0 or ``high`` inf: that side is unbounded (no ratio on it is excluded by the data).
    ``level`` is the confidence the interval guarantees: the nominal one, or less when an exact
    test with these numbers of runs cannot reach it (:func:`rank_level`).
    """

    ratio: float
    low: float
    high: float
    level: float
    method: str
    note: str = ""


def time_ratio(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
               a_limits: ArrayLike = math.inf, b_limits: ArrayLike = math.inf, confidence: float = 0.95,
               seed: int = 0, names: tuple[str, str] = ("A", "B")) -> TimeRatio:
    """The Hodges–Lehmann time ratio of A to B and its rank-inversion interval (censoring included).

    For a ratio r, arm A's times (and the limits its runs are followed to) are divided by r, and
    the Gehan test compares them with B's; the interval is every r the test does not reject at
    ``1 - level``, the estimate the r at which Gehan's statistic changes sign (the middle of the
    ratios where it is 0).  Each run is followed to its own limit (its planned budget minus the
    rule's span: the estimates use every run's whole follow-up, unlike the primary test, which cuts
    both arms at a common horizon).  Without censoring this is the exact Mann–Whitney (Hodges–Lehmann)
    interval for a shift in log time; ``clamp bench --stats`` measures its coverage in every design.

    Args:
        a_times, a_events, b_times, b_events: the two arms' phase times and crossing flags.
        a_limits, b_limits: how far each run was planned to be followed (a number, or one per run).
        confidence: the nominal level.
        seed: seeds the Monte Carlo p-values of large designs.
        names: the two arms' names, for the note.

    Returns:
        A :class:`TimeRatio`.

    Example:
        >>> r = time_ratio([10, 11, 12, 13, 14], [True] * 5, [100, 110, 120, 130, 140], [True] * 5)
        >>> round(r.ratio, 4), round(r.low, 4), round(r.high, 4), r.level
        (0.1, 0.0786, 0.1273, 0.95)
        >>> r = time_ratio([1504] * 5, [True] * 5, [30500] * 5, [False] * 5, a_limits=30500, b_limits=30500)
        >>> r.ratio, r.low, round(r.high, 4), r.note
        (nan, 0.0, 0.0493, "not estimable: B's runs did not cross (every ratio past the bound leaves the arms tied); lower side unbounded")
    """
    at, ae = coarsen(a_times, a_events, a_limits)
    bt, be = coarsen(b_times, b_events, b_limits)
    n_a, n_b = at.size, bt.size
    level, alpha = rank_level(n_a, n_b, confidence)
    nan = math.nan
    if n_a == 0 or n_b == 0:
        return TimeRatio(ratio=nan, low=nan, high=nan, level=level, method="none", note="no runs")
    if np.any(at <= 0) or np.any(bt <= 0):
        return TimeRatio(ratio=nan, low=nan, high=nan, level=level, method="none",
                         note="not estimable: a phase time of 0 or less has no ratio")
    if not (ae.any() or be.any()):
        return TimeRatio(ratio=nan, low=0.0, high=math.inf, level=level, method="none",
                         note="not estimable: no run of either arm crossed")
    la, lb = np.log(at), np.log(bt)
    cuts = np.unique((la[:, None] - lb[None, :]).ravel())  # log r at which some pair of runs changes order
    mids = (cuts[:-1] + cuts[1:]) / 2
    grid = np.sort(np.concatenate([cuts, mids, [cuts[0] - 1.0, cuts[-1] + 1.0]]))
    pooled = np.concatenate([la[:, None] - grid[None, :], np.broadcast_to(lb[:, None], (n_b, grid.size))])
    scores = _scores(pooled, np.concatenate([ae, be]))  # [n, E]: A's runs divided by r = exp(grid)
    p, how = _p_values(scores, n_a, seed)
    stat = scores[:n_a].sum(0)
    kept = np.flatnonzero(p > alpha + 1e-12)
    method = f"Gehan inversion ({how})"
    if kept.size == 0:  # cannot happen for a valid test (some ratio balances the arms); stated if it does
        return TimeRatio(ratio=nan, low=nan, high=nan, level=level, method=method,
                         note="no ratio is compatible with the data at this level")
    lo_i, hi_i = int(kept[0]), int(kept[-1])
    low = 0.0 if lo_i == 0 else float(np.exp(grid[lo_i] if grid[lo_i] in cuts else grid[lo_i - 1]))
    high = math.inf if hi_i == grid.size - 1 else float(np.exp(grid[hi_i] if grid[hi_i] in cuts else grid[hi_i + 1]))
    # The estimate: where A's summed score changes sign (it grows with r: A divided by more comes sooner).
    zero = np.flatnonzero(stat == 0)
    note = ""
    if zero.size and (zero[0] == 0 or zero[-1] == grid.size - 1):
        ratio = nan
        who = names[1] if not be.any() or (zero[0] == 0 and ae.any()) else names[0]
        note = f"not estimable: {who}'s runs did not cross (every ratio past the bound leaves the arms tied)"
    elif zero.size:
        ratio = float(np.exp((grid[zero[0]] + grid[zero[-1]]) / 2))
    else:
        up = np.flatnonzero(stat > 0)
        ratio = float(np.exp(grid[up[0]])) if up.size and up[0] > 0 else nan
    if low == 0.0 and math.isinf(high):
        note = "; ".join(s for s in (note, "no ratio is excluded by the data at this level") if s)
    elif low == 0.0 or math.isinf(high):
        note = "; ".join(s for s in (note, f"{'lower' if low == 0.0 else 'upper'} side unbounded") if s)
    return TimeRatio(ratio=ratio, low=low, high=high, level=level, method=method, note=note)


def _signed_rank_counts(n: int) -> NDArray[np.float64]:
    """How many of the 2**n sign patterns give each signed-rank sum W+ = 0 .. n(n+1)/2."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts


def signed_rank_interval(log_ratios: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """``(estimate, low, high, level)`` of the paired log time ratio: Walsh averages and the exact signed-rank interval.

    The estimate is the median of the Walsh averages (d_i + d_j) / 2, i <= j; the interval their
    k-th smallest and largest, k from the exact null distribution of the signed-rank sum.  With
    5 pairs the smallest two-sided p is 1/16, so the highest level there is 1 - 1/16 = 93.75 %
    (returned as ``level``: the interval is the whole range of Walsh averages).

    Example:
        >>> est, lo, hi, level = signed_rank_interval(np.log([0.5, 0.6, 0.55, 0.45, 0.5]))
        >>> round(float(np.exp(est)), 3), round(float(np.exp(lo)), 3), round(float(np.exp(hi)), 3), level
        (0.52, 0.45, 0.6, 0.9375)
    """
    d = np.asarray(log_ratios, dtype=float).ravel()
    n = d.size
    if n < 2:
        return math.nan, math.nan, math.nan, math.nan
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    cdf = np.cumsum(_signed_rank_counts(n)) / 2.0**n  # P(W+ <= w)
    alpha = 1.0 - confidence
    ok = np.flatnonzero(2 * cdf <= alpha + 1e-12)  # w = k - 1 for which rejecting W+ <= w keeps the level
    k = int(ok[-1]) + 1 if ok.size else 0
    if k == 0:  # the nominal level is out of reach: the widest exact interval
        k, level = 1, 1.0 - 2 * cdf[0]
    else:
        level = confidence
    return float(np.median(walsh)), float(walsh[k - 1]), float(walsh[walsh.size - k]), float(level)


__all__ = ["N_PERM", "TimeRatio", "coarsen", "gehan_scores", "gehan_test", "min_rank_p", "primary_test", "rank_level",
           "signed_rank_interval", "time_ratio"]
