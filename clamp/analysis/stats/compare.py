"""Comparing the phase-change times of two arms, with uncertainty.

Why this file exists: "with subcircuit X clamped the phase change comes N
times sooner" needs an estimate, a confidence interval and a test that stay
honest with five seeds and with runs that never crossed.  Every method here is
scipy's; this file chooses among them and packages the answer.

For arm A against reference B (usually the control):

- ``ratio`` = median(A) / median(B) (below 1: A is sooner) and ``difference`` =
  median(A) − median(B), medians from Kaplan–Meier when any run is censored
  (``inf`` when not reached); percentile bootstrap CIs (``scipy.stats.bootstrap``,
  arms resampled independently, seeded).  The percentile method is used because
  the bootstrap distribution of a median of a few values is discrete, where
  BCa's jackknife acceleration is unreliable.
- ``ratio_bound``: when one median is not reached, the ratio is undefined
  (NaN) and this gives the bound the data do support (``ratio_bound_kind``
  "at most" when the reference's median is not reached, "at least" when the
  arm's is): the unreached median lies beyond that arm's longest follow-up.
- ``rmst_difference``: difference in restricted mean time up to ``rmst_tau``
  (see :func:`rmst_horizon`), bootstrap CI.
- ``p_rank``: the primary test (``test``/``p`` repeat it): a two-sided permutation test of the
  Gehan (generalised Wilcoxon) statistic (:func:`primary_test`), exact (every relabelling) up to
  20,000 relabellings.  Each run's phase time is decidable a fixed span W after it
  (:mod:`clamp.phase`); every run of the comparison is first cut at the administrative horizon
  ``horizon`` = the planned budget both arms reach minus W (for a ``relative_to`` rule, minus each
  run's reference time): a crossing after it counts as "not by the horizon".  The horizon comes from
  the design, never from a run's early stop or a late trigger, so under the null every run is
  observed the same way and the test keeps its size with per-arm budgets, relapses, stopping and
  triggered windows (``clamp bench --stats`` measures it, design by design; ``docs/statistics.md``).
  Gehan's statistic scores each pair of runs +1/−1 when their order is known and 0 when it is not,
  so a run that ended before the horizon for another reason (a secondary rule on a stopped run)
  leaves only its own unknown pairs out, instead of tying every run at its censoring time.  With no
  run censored before the horizon it is the exact Mann–Whitney test on the cut data.
  ``horizon`` and ``n_ranked`` (runs crossed by their horizon, ordered by time) are reported.  Its
  floor is 2 / C(n_A + n_B, n_A).
- ``p_logrank``: ``scipy.stats.logrank`` (asymptotic), a secondary column
  only: at 3–5 runs per arm it can fall far below what any exact test can
  reach (quickstart: 0.025 where the exact floor is 0.1).
- ``min_p``: the smallest two-sided p the exact rank test can reach with these
  numbers of runs, 2 / C(n_A + n_B, n_A) (5 vs 5: 0.0079; 3 vs 3: 0.1).
- Paired analysis over seeds present in both arms (same seed = same
  initialisation and data): median per-seed time ratio with a bootstrap CI and
  the exact Wilcoxon signed-rank test on log ratios; when a pair has a censored
  run, the sign test (``scipy.stats.binomtest``) over the pairs whose order is
  known, and no paired ratio.  Its floor is 2 / 2^n_pairs (5 pairs: 0.0625).

An arm with fewer than :data:`MIN_RUNS` runs (e.g. a one-seed smoke run) is
not compared: the row keeps its run counts and design floors, its estimates
and p-values are NaN, and its ``note`` says why (no test or CI exists for a
single run, and scipy's permutation tests refuse one).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from clamp.errors import ConfigError
from clamp.analysis.stats.survival import as_sample, km_median, km_summary

Correction = Literal["holm", "bonferroni", "none"]
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "none")
_N_PERM = 20_000  # permutation resamples: exact enumeration up to 8 vs 8 runs
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
    ratio: float
    ratio_low: float
    ratio_high: float
    ratio_bound: float
    ratio_bound_kind: str
    difference: float
    difference_low: float
    difference_high: float
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


def min_rank_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p-value an exact rank test can give with ``n_a`` vs ``n_b`` runs.

    Example:
        >>> round(min_rank_p(5, 5), 4), min_rank_p(3, 3)
        (0.0079, 0.1)
    """
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def min_paired_p(n_pairs: int) -> float:
    """Smallest two-sided p-value an exact signed-rank or sign test can give with ``n_pairs`` pairs.

    Example:
        >>> min_paired_p(5)
        0.0625
    """
    return 1.0 if n_pairs < 1 else min(1.0, 2.0 / 2**n_pairs)


def adjust_pvalues(p: ArrayLike, method: Correction = "holm") -> NDArray[np.float64]:
    """Family-wise multiple-comparison correction; NaN p-values are left out and stay NaN.

    scipy has Benjamini–Hochberg (``false_discovery_control``) but no Holm, so
    Holm's step-down rule is written here: sort ascending, multiply the i-th
    smallest (0-based) by (m − i), make monotone with a running maximum, cap at 1.

    Args:
        p: p-values, shape ``[m]``.
        method: ``"holm"``, ``"bonferroni"`` or ``"none"``.

    Returns:
        Adjusted p-values in the input order.

    Example:
        >>> adjust_pvalues([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    if method not in CORRECTIONS:
        raise ConfigError(f"correction={method!r} is unknown; choose one of {list(CORRECTIONS)}.")
    arr = np.array(p, dtype=float).ravel()
    out = arr.copy()
    ok = np.flatnonzero(np.isfinite(arr))
    m = ok.size
    if m == 0 or method == "none":
        return out
    if method == "bonferroni":
        out[ok] = np.minimum(1.0, arr[ok] * m)
        return out
    order = ok[np.argsort(arr[ok], kind="stable")]
    stepped = np.maximum.accumulate((m - np.arange(m)) * arr[order])
    out[order] = np.minimum(1.0, stepped)
    return out


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
    ti, tj = t[:, None], t[None, :]
    before = e[:, None] & np.where(e[None, :], ti < tj, ti <= tj)  # i certainly before j
    return (before.sum(1) - before.sum(0)).astype(float)


_COMBOS: dict[tuple[int, int], NDArray[np.bool_]] = {}


def _labellings(n: int, k: int) -> NDArray[np.bool_]:
    """Every way to pick ``k`` of ``n`` runs, as a boolean matrix ``[C(n, k), n]`` (cached)."""
    key = (n, k)
    if key not in _COMBOS:
        idx = np.array(list(itertools.combinations(range(n), k)), dtype=np.intp).reshape(-1, k)
        m = np.zeros((idx.shape[0], n), dtype=bool)
        np.put_along_axis(m, idx, True, axis=1)
        _COMBOS[key] = m
    return _COMBOS[key]


def gehan_test(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
               seed: int = 0) -> tuple[float, str]:
    """Two-sided permutation test of the Gehan (generalised Wilcoxon) statistic: the primary test.

    Exact (every relabelling of the runs) when there are at most :data:`_N_PERM` of them, else a
    seeded Monte Carlo estimate; two-sided p = twice the smaller tail, capped at 1 (scipy's
    convention for its rank tests).  Valid when, under the null, the runs' labels are exchangeable
    -- which is why the data are first cut at a horizon that does not depend on the arm
    (:func:`primary_test`).  Without censoring it is the exact Mann–Whitney test.

    Example:
        >>> p, how = gehan_test([1, 2, 3, 4, 5], [True] * 5, [6, 7, 8, 9, 10], [True] * 5)
        >>> round(p, 4), how
        (0.0079, 'exact')
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if at.size == 0 or bt.size == 0:
        return math.nan, "no runs"
    scores = gehan_scores(np.concatenate([at, bt]), np.concatenate([ae, be]))
    n, k = scores.size, at.size
    observed = scores[:k].sum()
    if math.comb(n, k) <= _N_PERM:
        stat = _labellings(n, k) @ scores
        how = "exact"
        le, ge = np.mean(stat <= observed + 1e-9), np.mean(stat >= observed - 1e-9)
    else:
        rng = np.random.default_rng(seed)
        stat = np.array([scores[rng.permutation(n)[:k]].sum() for _ in range(_N_PERM)])
        how = f"permutation ({_N_PERM:,} random relabellings)"
        le = (1 + np.sum(stat <= observed + 1e-9)) / (1 + _N_PERM)
        ge = (1 + np.sum(stat >= observed - 1e-9)) / (1 + _N_PERM)
    return float(min(1.0, 2 * min(le, ge))), how


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


def _arm_summaries(enc: NDArray[np.float64], tau: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """KM median and RMST of every resample (rows of ``enc``, shape ``[..., n]``)."""
    lead = enc.shape[:-1]
    rows = np.sort(enc.reshape(-1, enc.shape[-1]), axis=-1)
    if np.all(rows >= 0):
        return (np.median(rows, axis=-1).reshape(lead), np.mean(np.minimum(rows, tau), axis=-1).reshape(lead))
    # Resamples of a few runs repeat a lot: compute each distinct multiset once.
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    vals = np.array([km_summary(*_decode(r), tau) for r in uniq])
    inverse = inverse.ravel()
    return vals[inverse, 0].reshape(lead), vals[inverse, 1].reshape(lead)


def _effects(a: NDArray[np.float64], b: NDArray[np.float64], tau: float) -> NDArray[np.float64]:
    ma, ra = _arm_summaries(a, tau)
    mb, rb = _arm_summaries(b, tau)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([ma / mb, ma - mb, ra - rb])


def bootstrap_effects(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
                      tau: float, n_boot: int = 4000, confidence: float = 0.95, seed: int = 0
                      ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Percentile bootstrap CIs of (median ratio, median difference, RMST difference), arms resampled apart.

    Args:
        a_times, a_events: arm A, shape ``[n_a]``.
        b_times, b_events: reference B, shape ``[n_b]``.
        tau: RMST horizon.
        n_boot: bootstrap resamples.
        confidence: CI level.
        seed: seeds the resampling (same input, same numbers).

    Returns:
        ``(low, high)``, each shape ``[3]``; NaN when an arm has fewer than 2 runs.

    Example:
        >>> low, high = bootstrap_effects([1, 2, 3, 4], [True] * 4, [10, 20, 30, 40], [True] * 4, tau=40)
        >>> bool(low[0] < 0.1 < high[0])
        True
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if at.size < 2 or bt.size < 2:
        nan = np.full(3, math.nan)
        return nan, nan.copy()
    # Resamples in which neither median is reached give NaN ratios; scipy then warns (with a
    # message about BCa, which is not used here) and the CI is reported as NaN, i.e. unknown.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((_encode(at, ae), _encode(bt, be)), lambda a, b, axis=-1: _effects(a, b, tau),
                          vectorized=True, n_resamples=n_boot, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed))
    return np.asarray(res.confidence_interval.low, float), np.asarray(res.confidence_interval.high, float)


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
    """Paired (same-seed) comparison: median per-seed ratio with CI, test and its floor."""

    n_pairs: int
    ratio: float
    ratio_low: float
    ratio_high: float
    test: str
    p: float
    min_p: float


def paired_analysis(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
                    n_boot: int = 4000, confidence: float = 0.95, seed: int = 0) -> PairedResult:
    """Compare runs that share a seed (element i of A with element i of B).

    Without censoring: the median of per-pair time ratios A/B with a bootstrap
    CI over pairs, and the exact Wilcoxon signed-rank test on log ratios (exact
    permutation when there are ties or zeros).  With censoring: the sign test
    over the pairs whose order is known (a crossing no later than the partner's
    censoring time), and no ratio.

    Example:
        >>> r = paired_analysis([1, 2, 3, 4, 5], [True] * 5, [2, 3, 5, 7, 11], [True] * 5)
        >>> round(r.ratio, 3), r.test, r.p
        (0.571, 'wilcoxon exact', 0.0625)
    """
    at, ae = as_sample(a_times, a_events)
    bt, be = as_sample(b_times, b_events)
    if at.size != bt.size:
        raise ValueError("paired_analysis needs the same number of runs in both arms, in seed order.")
    n = at.size
    nan = math.nan
    if n < 2:
        return PairedResult(n_pairs=n, ratio=nan, ratio_low=nan, ratio_high=nan, test="none", p=nan, min_p=1.0)
    if np.all(ae) and np.all(be):
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log(at) - np.log(bt)
        if not np.all(np.isfinite(log_ratio)):
            return PairedResult(n_pairs=n, ratio=nan, ratio_low=nan, ratio_high=nan, test="none (zero times)",
                                p=nan, min_p=min_paired_p(n))
        ratio = float(np.exp(np.median(log_ratio)))
        boot = stats.bootstrap((log_ratio,), np.median, vectorized=True, n_resamples=n_boot, confidence_level=confidence,
                               method="percentile", rng=np.random.default_rng(seed))
        lo, hi = math.exp(boot.confidence_interval.low), math.exp(boot.confidence_interval.high)
        nonzero = log_ratio[log_ratio != 0]
        if nonzero.size == 0:
            return PairedResult(n_pairs=n, ratio=ratio, ratio_low=lo, ratio_high=hi, test="wilcoxon (all pairs tied)",
                                p=1.0, min_p=min_paired_p(n))
        if nonzero.size == n and np.unique(np.abs(log_ratio)).size == n:
            p, test = stats.wilcoxon(log_ratio, method="exact").pvalue, "wilcoxon exact"
        else:
            method = stats.PermutationMethod(n_resamples=_N_PERM, rng=np.random.default_rng(seed))
            p, test = stats.wilcoxon(log_ratio, method=method).pvalue, "wilcoxon permutation"
        return PairedResult(n_pairs=n, ratio=ratio, ratio_low=lo, ratio_high=hi, test=test, p=float(p),
                            min_p=min_paired_p(n))
    # A pair's order is known when its earlier crossing comes no later than the partner's censoring.
    a_sooner = ae & np.where(be, at < bt, at <= bt)
    b_sooner = be & np.where(ae, bt < at, bt <= at)
    k, m = int(b_sooner.sum()), int(a_sooner.sum() + b_sooner.sum())
    p = float(stats.binomtest(k, m).pvalue) if m else nan
    return PairedResult(n_pairs=n, ratio=nan, ratio_low=nan, ratio_high=nan,
                        test=f"sign test ({m} of {n} pairs ordered)", p=p, min_p=min_paired_p(m))


def compare_samples(a_times: ArrayLike, a_events: ArrayLike, b_times: ArrayLike, b_events: ArrayLike, *,
                    arm: str = "A", reference: str = "B", pairs: Sequence[tuple[int, int]] = (),
                    n_boot: int = 4000, confidence: float = 0.95, seed: int = 0,
                    a_limits: ArrayLike = math.inf, b_limits: ArrayLike = math.inf) -> Comparison:
    """Compare arm A's phase times with reference B's: estimates, bootstrap CIs, tests, design floor.

    Args:
        a_times, a_events: arm A's times (sequences seen) and crossing flags, shape ``[n_a]``.
        b_times, b_events: reference B's, shape ``[n_b]``.
        arm, reference: names written into the result.
        pairs: index pairs ``(i, j)``: A's run i and B's run j share a seed (empty: no paired analysis).
        n_boot: bootstrap resamples.
        confidence: CI level.
        seed: seeds all resampling.
        a_limits, b_limits: each run's administrative horizon for the primary test (:func:`primary_test`);
            the estimates use every run's whole follow-up.

    Returns:
        A :class:`Comparison`; its fields are described in this module's docstring.

    Example:
        >>> c = compare_samples([10, 11, 12, 13, 14], [True] * 5, [100, 110, 120, 130, 140], [True] * 5)
        >>> round(c.ratio, 3), c.test, round(c.p, 4), round(c.min_p, 4)
        (0.1, 'Gehan (exact)', 0.0079, 0.0079)
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
    ratio = diff = bound = math.nan
    bound_kind = ""
    if math.isfinite(med_a) and math.isfinite(med_b):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio, diff = float(np.float64(med_a) / med_b), med_a - med_b
    elif math.isfinite(med_a) and math.isinf(med_b):
        # B's median is beyond its longest follow-up, so the ratio is at most this.
        bound, bound_kind = med_a / bt.max(), "at most"
    elif math.isinf(med_a) and math.isfinite(med_b):
        bound, bound_kind = at.max() / med_b, "at least"
    for name, m, t in ((arm, med_a, at), (reference, med_b, bt)):
        if math.isinf(m):
            notes.append(f"{name}: median not reached (fewer than half crossed by {t.max():.3g})")
    tau = rmst_horizon(at, ae, bt, be)
    _, rmst_a = km_summary(at, ae, tau) if at.size else (math.nan, math.nan)
    _, rmst_b = km_summary(bt, be, tau) if bt.size else (math.nan, math.nan)
    low, high = bootstrap_effects(at, ae, bt, be, tau=tau, n_boot=n_boot, confidence=confidence, seed=seed)
    p_rank, rank_how, n_ranked = primary_test(at, ae, bt, be, a_limits=a_limits, b_limits=b_limits, seed=seed)
    p_lr = logrank_test(at, ae, bt, be)
    limits = np.concatenate([np.broadcast_to(np.asarray(a_limits, float), at.shape),
                             np.broadcast_to(np.asarray(b_limits, float), bt.shape)])
    horizon = float(np.min(limits)) if limits.size else math.nan
    test, p = f"Gehan ({rank_how})", p_rank  # exact or permutation, censoring included: see the module docstring
    if pairs:
        ia, ib = (np.array(ix, dtype=int) for ix in zip(*pairs))
        pr = paired_analysis(at[ia], ae[ia], bt[ib], be[ib], n_boot=n_boot, confidence=confidence, seed=seed)
    else:
        pr = PairedResult(n_pairs=0, ratio=math.nan, ratio_low=math.nan, ratio_high=math.nan, test="none",
                          p=math.nan, min_p=1.0)
    return Comparison(
        arm=arm, reference=reference, n_arm=int(at.size), n_reference=int(bt.size),
        crossed_arm=int(ae.sum()), crossed_reference=int(be.sum()), median_arm=med_a, median_reference=med_b,
        ratio=float(ratio), ratio_low=float(low[0]), ratio_high=float(high[0]), ratio_bound=float(bound),
        ratio_bound_kind=bound_kind,
        difference=float(diff), difference_low=float(low[1]), difference_high=float(high[1]),
        rmst_tau=tau, rmst_difference=float(rmst_a - rmst_b), rmst_low=float(low[2]), rmst_high=float(high[2]),
        test=test, p=float(p), p_rank=p_rank, rank_method=rank_how, horizon=horizon, n_ranked=n_ranked, p_logrank=p_lr,
        min_p=min_rank_p(int(at.size), int(bt.size)), n_pairs=pr.n_pairs, paired_ratio=pr.ratio,
        paired_ratio_low=pr.ratio_low, paired_ratio_high=pr.ratio_high, paired_test=pr.test, paired_p=pr.p,
        paired_min_p=pr.min_p, confidence=confidence, note="; ".join(notes),
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
        crossed_reference=int(be.sum()), median_arm=nan, median_reference=nan, ratio=nan, ratio_low=nan,
        ratio_high=nan, ratio_bound=nan, ratio_bound_kind="", difference=nan, difference_low=nan, difference_high=nan,
        rmst_tau=nan, rmst_difference=nan, rmst_low=nan, rmst_high=nan, test="none", p=nan, p_rank=nan,
        rank_method="", horizon=nan, n_ranked=0, p_logrank=nan, min_p=min_rank_p(int(at.size), int(bt.size)), n_pairs=n_pairs,
        paired_ratio=nan, paired_ratio_low=nan, paired_ratio_high=nan, paired_test="none", paired_p=nan,
        paired_min_p=min_paired_p(n_pairs), confidence=confidence,
        note=f"not compared: needs at least {MIN_RUNS} runs per arm ({arm} {at.size}, {reference} {bt.size})",
    )
