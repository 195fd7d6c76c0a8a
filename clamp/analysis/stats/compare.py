"""Comparing the phase-change times of two arms: the time ratio with its interval, the tests, the floors.

Why this file exists: "with subcircuit X clamped the phase change comes N times sooner" needs an
estimate, an interval that covers and a test that stays honest with five seeds and with runs that
never crossed.  The rank machinery is :mod:`.rank`; this file packages one comparison.

For arm A against reference B (usually the control):

- ``ratio`` / ``ratio_low`` / ``ratio_high``: the time ratio A / B (below 1: A is sooner), the
  Hodges–Lehmann estimate on log times with the interval that inverts the Gehan rank test
  (:func:`clamp.analysis.stats.rank.time_ratio`), each run followed to its own planned limit.
  ``ratio_level`` is the confidence the interval guarantees (the nominal one, or the highest an
  exact interval reaches with these numbers of runs: 90 % at 3 vs 3); ``ratio_note`` says why a
  side is unbounded or the estimate undefined (then ``ratio_bound``/``ratio_bound_kind`` give the
  bound the data support: "at most" when B's runs did not cross, "at least" when A's did not).
  ``clamp bench --stats`` measures the coverage in every design it simulates.
- ``median_arm`` / ``median_reference`` (Kaplan–Meier when any run is censored, ``inf`` when not
  reached), their ratio ``median_ratio`` and ``difference``: descriptive, without intervals.
- ``rmst_difference``: difference in restricted mean time up to ``rmst_tau`` (see :func:`rmst_horizon`),
  with a seeded percentile bootstrap CI (approximate; stats.csv only).
- ``p_rank``: the primary test (``test``/``p`` repeat it): a two-sided permutation test of Gehan's
  generalised Wilcoxon statistic on every run cut at the comparison's administrative horizon
  ``horizon`` (the planned budget both arms reach minus the rule's span W; minus each run's
  reference time for ``relative_to``), exact up to 20,000 relabellings
  (:func:`clamp.analysis.stats.rank.primary_test`).  ``n_ranked``: runs crossed by their horizon.
  Its floor ``min_p`` is 2 / C(n_A + n_B, n_A).
- ``p_logrank``: ``scipy.stats.logrank`` (asymptotic), a secondary column only: at 3–5 runs per arm
  it can fall far below what any exact test can reach.
- Paired analysis over seeds present in both arms (same seed = same initialisation and data): the
  median of Walsh averages of per-seed log ratios with the exact signed-rank interval
  (``paired_level``: 93.75 % at most with 5 pairs) and the exact Wilcoxon signed-rank test; when a
  pair has a censored run, the sign test over the pairs whose order is known, and no paired ratio.
  Its floor is 2 / 2^n_pairs (5 pairs: 0.0625).

An arm with fewer than :data:`MIN_RUNS` runs (e.g. a one-seed smoke run) is not compared: the row
keeps its run counts and design floors, its estimates and p-values are NaN, and its ``note`` says why.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from clamp.analysis.stats.rank import N_PERM, min_rank_p, primary_test, signed_rank_interval, time_ratio
from clamp.analysis.stats.survival import as_sample, km_median, km_summary

MIN_RUNS = 2  # runs per arm below which a comparison is reported but not computed


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Everything measured when comparing arm A with reference B (one row of stats.csv)."""

    arm: str
    reference: str
    n_arm: int
    n_reference: int
    crossed_arm: int
    crossed_reference: int
    median_arm: float
    median_reference: float
    median_ratio: float
    ratio: float
    ratio_low: float
    ratio_high: float
    ratio_level: float
    ratio_method: str
    ratio_note: str
    ratio_bound: float
    ratio_bound_kind: str
    difference: float
    rmst_tau: float
    rmst_difference: float
    rmst_low: float
    rmst_high: float
    test: str
    p: float
    p_rank: float
    rank_method: str
    horizon: float
    n_ranked: int
    p_logrank: float
    min_p: float
    n_pairs: int
    paired_ratio: float
    paired_ratio_low: float
    paired_ratio_high: float
    paired_level: float
    paired_test: str
    paired_p: float
    paired_min_p: float
    confidence: float
    note: str

    @property
    def n_censored(self) -> int:
        return self.n_arm - self.crossed_arm + self.n_reference - self.crossed_reference

    def to_dict(self) -> dict:
        d = asdict(self)
        d["censored_arm"] = self.n_arm - self.crossed_arm
        d["censored_reference"] = self.n_reference - self.crossed_reference
        return d


def min_paired_p(n_pairs: int) -> float:
    """Smallest two-sided p-value an exact signed-rank or sign test can give with ``n_pairs`` pairs.

    Example:
        >>> min_paired_p(5)
        0.0625
    """
    return 1.0 if n_pairs < 1 else min(1.0, 2.0 / 2**n_pairs)


def logrank_test(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike) -> float:
    """Two-sided log-rank p-value (``scipy.stats.logrank``); NaN when nobody crossed.

    Example:
        >>> round(logrank_test([1, 2, 3], [True] * 3, [4, 5, 6], [True, True, False]), 3)
        0.025
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if at.size == 0 or bt.size == 0 or not (ae.any() or be.any()):
        return math.nan
    if _logrank_variance(at, ae, bt, be) == 0:
        # E.g. every run of both arms crossing at the same evaluation: the statistic is 0/0 (scipy would warn
        # "invalid value encountered in scalar divide" and return NaN); the test is undefined, say so.
        return math.nan
    res = stats.logrank(stats.CensoredData(uncensored=at[ae], right=at[~ae]),
                        stats.CensoredData(uncensored=bt[be], right=bt[~be]))
    return float(res.pvalue)


def _logrank_variance(at: NDArray[np.float64], ae: NDArray[np.bool_], bt: NDArray[np.float64],
                      be: NDArray[np.bool_]) -> float:
    """The log-rank statistic's null variance: the sum over crossing times of n_a n_b d (n − d) / (n² (n − 1)).

    Example:
        >>> five = np.array([5.0, 5.0])
        >>> _logrank_variance(five, np.array([True, True]), five, np.array([True, True]))
        0.0
    """
    var = 0.0
    for t in np.unique(np.concatenate([at[ae], bt[be]])):
        n_a, n_b = float(np.sum(at >= t)), float(np.sum(bt >= t))
        n = n_a + n_b
        d = float(np.sum((at == t) & ae) + np.sum((bt == t) & be))
        if n > 1:
            var += n_a * n_b * d * (n - d) / (n * n * (n - 1))
    return var


def _encode(t: NDArray[np.float64], e: NDArray[np.bool_]) -> NDArray[np.float64]:
    # One number per run so scipy's bootstrap can resample runs: crossings keep their
    # time (>= 0), censored runs become -(time + 1) (< 0).
    return np.where(e, t, -(t + 1.0))


def _decode(v: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    e = v >= 0
    return np.where(e, v, -v - 1.0), e


def _rmst_of(enc: NDArray[np.float64], tau: float) -> NDArray[np.float64]:
    """RMST of every resample (rows of ``enc``, shape ``[..., n]``)."""
    lead = enc.shape[:-1]
    rows = np.sort(enc.reshape(-1, enc.shape[-1]), axis=-1)
    if np.all(rows >= 0):
        return np.mean(np.minimum(rows, tau), axis=-1).reshape(lead)
    # Resamples of a few runs repeat a lot: compute each distinct multiset once.
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    vals = np.array([km_summary(*_decode(r), tau)[1] for r in uniq])
    return vals[inverse.ravel()].reshape(lead)


def bootstrap_rmst(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
                   tau: float, n_boot: int = 4000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the RMST difference (A − B up to ``tau``), arms resampled apart.

    An approximate interval (stats.csv only): the headline effect is the time ratio with its rank
    interval (:func:`clamp.analysis.stats.rank.time_ratio`).

    Args:
        a_times, a_events: arm A, shape ``[n_a]``.
        b_times, b_events: reference B, shape ``[n_b]``.
        tau: RMST horizon.
        n_boot: bootstrap resamples.
        confidence: CI level.
        seed: seeds the resampling (same input, same numbers).

    Returns:
        ``(low, high)``; NaN when an arm has fewer than 2 runs.

    Example:
        >>> low, high = bootstrap_rmst([1, 2, 3, 4], [True] * 4, [10, 20, 30, 40], [True] * 4, tau=40)
        >>> bool(low < -20 < high)
        True
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if at.size < 2 or bt.size < 2:
        return math.nan, math.nan
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((_encode(at, ae), _encode(bt, be)),
                              lambda a, b, axis=-1: _rmst_of(a, tau) - _rmst_of(b, tau),
                              vectorized=True, n_resamples=n_boot, confidence_level=confidence,
                              method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def rmst_horizon(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike) -> float:
    """The horizon up to which both arms' Kaplan–Meier curves are known.

    An arm whose longest run crossed has a curve that reaches 0 and is known
    forever; one whose longest run is censored is known up to that time.  The
    horizon is the shorter of the limits, or the longest time when both are
    known forever (then the RMST difference is the difference of mean times).

    Example:
        >>> rmst_horizon([1, 2], [True, True], [3, 9], [True, False]), rmst_horizon([1, 2], [True, True], [3, 9], [True, True])
        (9.0, 9.0)
        >>> rmst_horizon([1, 5], [True, False], [3, 9], [True, False])
        5.0
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if at.size == 0 or bt.size == 0:
        return math.nan
    limits = [float(t.max()) for t, e in ((at, ae), (bt, be)) if not e[t == t.max()].all()]
    return min(limits) if limits else float(max(at.max(), bt.max()))


@dataclass(frozen=True, kw_only=True)
class PairedResult:
    """Paired (same-seed) comparison: the paired time ratio with its exact interval and level, the test and its floor."""

    n_pairs: int
    ratio: float
    ratio_low: float
    ratio_high: float
    level: float
    test: str
    p: float
    min_p: float


def paired_analysis(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
                    confidence: float = 0.95, seed: int = 0) -> PairedResult:
    """Compare runs that share a seed (element i of A with element i of B).

    Without censoring: the median of Walsh averages of per-pair log time ratios A/B with the exact
    signed-rank interval (:func:`clamp.analysis.stats.rank.signed_rank_interval`; ``level`` says
    what it guarantees), and the exact Wilcoxon signed-rank test (exact permutation when there are
    ties or zeros).  With censoring: the sign test over the pairs whose order is known (a crossing
    no later than the partner's censoring time), and no ratio.

    Example:
        >>> r = paired_analysis([1, 2, 3, 4, 5], [True] * 5, [2, 3, 5, 7, 11], [True] * 5)
        >>> round(r.ratio, 3), round(r.ratio_low, 3), round(r.ratio_high, 3), r.level, r.test, r.p
        (0.55, 0.455, 0.667, 0.9375, 'wilcoxon exact', 0.0625)
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if at.size != bt.size:
        raise ValueError("paired_analysis needs the same number of runs in both arms, in seed order.")
    n = at.size
    nan = math.nan
    if n < 2:
        return PairedResult(n_pairs=n, ratio=nan, ratio_low=nan, ratio_high=nan, level=nan, test="none", p=nan,
                            min_p=1.0)
    if np.all(ae) and np.all(be):
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log(at) - np.log(bt)
        if not np.all(np.isfinite(log_ratio)):
            return PairedResult(n_pairs=n, ratio=nan, ratio_low=nan, ratio_high=nan, level=nan,
                                test="none (zero times)", p=nan, min_p=min_paired_p(n))
        est, lo, hi, level = signed_rank_interval(log_ratio, confidence)
        ratio, lo, hi = math.exp(est), math.exp(lo), math.exp(hi)
        nonzero = log_ratio[log_ratio != 0]
        if nonzero.size == 0:
            return PairedResult(n_pairs=n, ratio=ratio, ratio_low=lo, ratio_high=hi, level=level,
                                test="wilcoxon (all pairs tied)", p=1.0, min_p=min_paired_p(n))
        if nonzero.size == n and np.unique(np.abs(log_ratio)).size == n:
            p, test = stats.wilcoxon(log_ratio, method="exact").pvalue, "wilcoxon exact"
        else:
            method = stats.PermutationMethod(n_resamples=N_PERM, rng=np.random.default_rng(seed))
            p, test = stats.wilcoxon(log_ratio, method=method).pvalue, "wilcoxon permutation"
        return PairedResult(n_pairs=n, ratio=ratio, ratio_low=lo, ratio_high=hi, level=level, test=test, p=float(p),
                            min_p=min_paired_p(n))
    # A pair's order is known when its earlier crossing comes no later than the partner's censoring.
    a_sooner = ae & np.where(be, at < bt, at <= bt)
    b_sooner = be & np.where(ae, bt < at, bt <= at)
    k, m = int(b_sooner.sum()), int(a_sooner.sum() + b_sooner.sum())
    p = float(stats.binomtest(k, m).pvalue) if m else nan
    return PairedResult(n_pairs=n, ratio=nan, ratio_low=nan, ratio_high=nan, level=nan,
                        test=f"sign test ({m} of {n} pairs ordered)", p=p, min_p=min_paired_p(m))


def compare_samples(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
                    arm: str = "A", reference: str = "B", pairs: Sequence[tuple[int, int]] = (),
                    n_boot: int = 4000, confidence: float = 0.95, seed: int = 0,
                    a_limits: ArrayLike = math.inf, b_limits: ArrayLike = math.inf,
                    a_follow: ArrayLike = math.inf, b_follow: ArrayLike = math.inf) -> Comparison:
    """Compare arm A's phase times with reference B's: time ratio and interval, tests, design floor.

    Args:
        a_times, a_events: arm A's times (sequences seen) and crossing flags, shape ``[n_a]``.
        b_times, b_events: reference B's, shape ``[n_b]``.
        arm, reference: names written into the result.
        pairs: index pairs ``(i, j)``: A's run i and B's run j share a seed (empty: no paired analysis).
        n_boot: bootstrap resamples (the RMST interval).
        confidence: nominal CI level.
        seed: seeds all resampling.
        a_limits, b_limits: each run's administrative horizon for the primary test (:func:`primary_test`).
        a_follow, b_follow: how far each run was planned to be followed (its budget minus the rule's
            span), for the time ratio's interval: the estimates use every run's whole follow-up.

    Returns:
        A :class:`Comparison`; its fields are described in this module's docstring.

    Example:
        >>> c = compare_samples([10, 11, 12, 13, 14], [True] * 5, [100, 110, 120, 130, 140], [True] * 5)
        >>> round(c.ratio, 3), round(c.ratio_low, 3), round(c.ratio_high, 3), c.test, round(c.p, 4)
        (0.1, 0.079, 0.127, 'Gehan (exact)', 0.0079)
        >>> c = compare_samples([10], [True], [100], [True], arm="a", reference="b")
        >>> c.ratio, c.p, c.note
        (nan, nan, 'not compared: needs at least 2 runs per arm (a 1, b 1)')
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if min(at.size, bt.size) < MIN_RUNS:
        return _not_compared(at, ae, bt, be, arm=arm, reference=reference, n_pairs=len(pairs), confidence=confidence)
    notes: list[str] = []
    med_a, med_b = km_median(at, ae), km_median(bt, be)
    median_ratio = diff = math.nan
    if math.isfinite(med_a) and math.isfinite(med_b):
        with np.errstate(divide="ignore", invalid="ignore"):
            median_ratio, diff = float(np.float64(med_a) / med_b), med_a - med_b
    for name, m, t in ((arm, med_a, at), (reference, med_b, bt)):
        if math.isinf(m):
            notes.append(f"{name}: median not reached (fewer than half crossed by {t.max():.3g})")
    tr = time_ratio(at, ae, bt, be, a_limits=a_follow, b_limits=b_follow, confidence=confidence, seed=seed,
                    names=(arm, reference))
    bound, bound_kind = math.nan, ""
    if not math.isfinite(tr.ratio):
        if tr.low == 0 and math.isfinite(tr.high):
            bound, bound_kind = tr.high, "at most"
        elif math.isinf(tr.high) and tr.low > 0:
            bound, bound_kind = tr.low, "at least"
    tau = rmst_horizon(at, ae, bt, be)
    _, rmst_a = km_summary(at, ae, tau)
    _, rmst_b = km_summary(bt, be, tau)
    rmst_low, rmst_high = bootstrap_rmst(at, ae, bt, be, tau=tau, n_boot=n_boot, confidence=confidence, seed=seed)
    p_rank, rank_how, n_ranked = primary_test(at, ae, bt, be, a_limits=a_limits, b_limits=b_limits, seed=seed)
    p_lr = logrank_test(at, ae, bt, be)
    limits = np.concatenate([np.broadcast_to(np.asarray(a_limits, float), at.shape),
                             np.broadcast_to(np.asarray(b_limits, float), bt.shape)])
    horizon = float(np.min(limits)) if limits.size else math.nan
    if pairs:
        ia, ib = (np.array(ix, dtype=int) for ix in zip(*pairs))
        pr = paired_analysis(at[ia], ae[ia], bt[ib], be[ib], confidence=confidence, seed=seed)
    else:
        pr = PairedResult(n_pairs=0, ratio=math.nan, ratio_low=math.nan, ratio_high=math.nan, level=math.nan,
                          test="none", p=math.nan, min_p=1.0)
    return Comparison(
        arm=arm, reference=reference, n_arm=int(at.size), n_reference=int(bt.size),
        crossed_arm=int(ae.sum()), crossed_reference=int(be.sum()), median_arm=med_a, median_reference=med_b,
        median_ratio=float(median_ratio), ratio=tr.ratio, ratio_low=tr.low, ratio_high=tr.high,
        ratio_level=tr.level, ratio_method=tr.method, ratio_note=tr.note, ratio_bound=float(bound),
        ratio_bound_kind=bound_kind, difference=float(diff),
        rmst_tau=tau, rmst_difference=float(rmst_a - rmst_b), rmst_low=rmst_low, rmst_high=rmst_high,
        test=f"Gehan ({rank_how})", p=float(p_rank), p_rank=p_rank, rank_method=rank_how, horizon=horizon,
        n_ranked=n_ranked, p_logrank=p_lr, min_p=min_rank_p(int(at.size), int(bt.size)), n_pairs=pr.n_pairs,
        paired_ratio=pr.ratio, paired_ratio_low=pr.ratio_low, paired_ratio_high=pr.ratio_high,
        paired_level=pr.level, paired_test=pr.test, paired_p=pr.p, paired_min_p=pr.min_p, confidence=confidence,
        note="; ".join(notes),
    )


def too_few_runs(n_arm: int, n_reference: int) -> bool:
    """True when either arm has fewer than :data:`MIN_RUNS` runs, so the comparison is not computed.

    Example:
        >>> too_few_runs(1, 5), too_few_runs(2, 2)
        (True, False)
    """
    return min(n_arm, n_reference) < MIN_RUNS


def _not_compared(at: NDArray[np.float64], ae: NDArray[np.bool_], bt: NDArray[np.float64], be: NDArray[np.bool_], *,
                  arm: str, reference: str, n_pairs: int, confidence: float) -> Comparison:
    """The row of a comparison with too few runs: counts and design floors kept, estimates and p-values NaN."""
    nan = math.nan
    return Comparison(
        arm=arm, reference=reference, n_arm=int(at.size), n_reference=int(bt.size), crossed_arm=int(ae.sum()),
        crossed_reference=int(be.sum()), median_arm=nan, median_reference=nan, median_ratio=nan, ratio=nan,
        ratio_low=nan, ratio_high=nan, ratio_level=nan, ratio_method="none", ratio_note="", ratio_bound=nan,
        ratio_bound_kind="", difference=nan, rmst_tau=nan, rmst_difference=nan, rmst_low=nan, rmst_high=nan, test="none", p=nan, p_rank=nan,
        rank_method="", horizon=nan, n_ranked=0, p_logrank=nan, min_p=min_rank_p(int(at.size), int(bt.size)), n_pairs=n_pairs,
        paired_ratio=nan, paired_ratio_low=nan, paired_ratio_high=nan, paired_level=nan, paired_test="none",
        paired_p=nan,
        paired_min_p=min_paired_p(n_pairs), confidence=confidence,
        note=f"not compared: needs at least {MIN_RUNS} runs per arm ({arm} {at.size}, {reference} {bt.size})",
    )
