"""Phase-change time of one training curve, by several estimators that can disagree.

Why this file exists: the causal claim of a clamping study is about *when* the
induction head forms, so every run needs a defensible phase-change time.  The
primary estimator is the study's phase rule (:mod:`.rule`: by default Singh et
al.'s first evaluation with the training loss below 0.4·ln 2, kept to the end
of the run); the others re-time the same event from the curve's *shape*, each
computed on the curve itself and never seeded or bounded by the threshold
crossing, so they can disagree with it (issue 20):

- ``steepest``: the point of steepest descent (ascent) of the smoothed curve
  (Savitzky–Golay on a uniform grid) within the monotone stretch where the
  *smoothed* curve passes the threshold level;
- ``sigmoid_mid`` / ``sigmoid_onset``: midpoint and tangent-line onset
  (midpoint − 2·scale) of a four-parameter logistic fitted by least squares to
  the curve after its early transient (:func:`transient_end`, found from the
  curve's shape) from several starting midpoints spread over the run (the
  midpoint may land anywhere, even outside the evaluations);
- ``changepoint``: the least-squares single change point in the mean (the
  first evaluation of the second segment).

Whether a run had its phase change at all is decided by the rule alone: a run
that never crosses (or relapses) is right-censored at its last evaluation under
*every* estimator.  An estimator that cannot time a crossed run says why instead
of inventing or clipping a time: its time is NaN, not censored, and its note is
the reason ("no drop", "bad fit: R² …", "onset before the first evaluation", "bad
fit: midpoint after the last evaluation").  Such runs leave that estimator's
comparisons, which report how many runs they used.

The plateau before the drop: its level is the smoothed value at the flattest
point before the crossing, and it extends both ways while the smoothed curve
stays within ``plateau_tol`` × |level − threshold| of that level.

All functions are pure: they copy what they need and never mutate inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares
from scipy.signal import savgol_filter
from scipy.special import expit

from clamp.phase import Crossing, PhaseRule, Span, clean_curve, crossing_time, outside

ESTIMATORS: tuple[str, ...] = ("threshold", "steepest", "sigmoid_mid", "sigmoid_onset", "changepoint")
MIN_R2 = 0.8  # a sigmoid fit explaining less of the curve's variance than this is a bad fit
_MAX_GRID = 20_000  # points on the uniform grid used for smoothing


@dataclass(frozen=True, kw_only=True)
class PhaseTime:
    """One estimator's phase-change time for one run.

    ``event`` True: the phase change happened at ``time`` (sequences seen).
    ``event`` False with finite ``time``: right-censored, i.e. not by ``time``.
    ``time`` NaN: the estimator could not produce a time (see ``note``).
    """

    estimator: str
    time: float
    event: bool
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class SigmoidFit:
    """Four-parameter logistic ``lower + (upper - lower) * expit(±(x - midpoint) / scale)``.

    ``onset`` is where the tangent at the midpoint meets the starting asymptote
    (``midpoint - 2 * scale``); ``width`` is the 10 %–90 % span (``2 ln 9 * scale``);
    ``r2`` is the coefficient of determination of the fit on the whole curve.
    ``success`` False: ``reason`` says why (the fitted values are kept when there are any).
    """

    success: bool
    reason: str = ""
    midpoint: float = math.nan
    onset: float = math.nan
    width: float = math.nan
    scale: float = math.nan
    start_level: float = math.nan
    end_level: float = math.nan
    r2: float = math.nan


@dataclass(frozen=True, kw_only=True)
class Plateau:
    """The flat stretch before the drop: level, where it starts and ends, duration (sequences seen).

    ``ongoing`` is True when the run never crossed, so the duration is a lower bound.
    """

    level: float
    start: float
    end: float
    duration: float
    ongoing: bool


@dataclass(frozen=True, kw_only=True)
class PhaseEstimates:
    """Everything :func:`estimate_phase` measures on one curve."""

    rule: PhaseRule
    times: tuple[PhaseTime, ...]
    sigmoid: SigmoidFit
    plateau: Plateau
    last_eval: float
    n_evals: int
    crossing: Crossing = field(default_factory=lambda: Crossing(math.nan, False, math.nan, False, ""))

    def by_estimator(self) -> dict[str, PhaseTime]:
        return {t.estimator: t for t in self.times}


def threshold_time(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, windows: Iterable[Span] = ()) -> PhaseTime:
    """The rule's time (:func:`clamp.phase.crossing_time`) as the ``threshold`` estimator.

    Example:
        >>> threshold_time([0, 10, 20, 30], [0.7, 0.6, 0.2, 0.1], PhaseRule()).time
        20.0
        >>> threshold_time([0, 10, 20], [0.7, 0.7, 0.7], PhaseRule())
        PhaseTime(estimator='threshold', time=20.0, event=False, note='never crossed')
    """
    c = crossing_time(x, y, rule, windows=windows)
    return PhaseTime(estimator="threshold", time=c.time, event=c.event, note=c.note)


def smooth_curve(x: ArrayLike, y: ArrayLike, *, smooth: float = 0.03,
                 window: float | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The curve on a uniform grid, Savitzky–Golay smoothed, with its derivative.

    Evaluations may be unevenly spaced (dense around the phase change), so the
    curve is first interpolated onto a grid with the smallest spacing (at most
    20 000 points); the quadratic fit's window is ``window`` sequences when given (the same
    for every run of a study: :func:`smoothing_window`), else ``smooth`` of this curve's x range.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        smooth: window as a fraction of the x range (when ``window`` is None); 0 disables smoothing.
        window: window in sequences seen (independent of how long this run is).

    Returns:
        ``(grid, value, slope)``, each shape ``[G]``; slope is per sequence.

    Example:
        >>> g, s, ds = smooth_curve([0, 1, 2, 3], [0, 2, 4, 6], smooth=0)
        >>> ds.tolist()
        [2.0, 2.0, 2.0, 2.0]
    """
    xa, ya = clean_curve(x, y)
    if xa.size < 2:
        return xa, ya, np.zeros_like(ya)
    span = xa[-1] - xa[0]
    dx = max(float(np.min(np.diff(xa))), span / (_MAX_GRID - 1))
    n = int(math.floor(span / dx + 1e-9)) + 1
    grid = xa[0] + dx * np.arange(n)
    values = np.interp(grid, xa, ya)
    points = int(round(window / dx)) if window is not None else int(round(smooth * n))
    points |= 1  # odd
    if (window is None and smooth <= 0) or (window is not None and window <= 0) or n < 5 or points < 5:
        return grid, values, np.gradient(values, dx)
    points = min(points, n if n % 2 else n - 1)
    s = savgol_filter(values, points, 2, mode="interp")
    ds = savgol_filter(values, points, 2, deriv=1, delta=dx, mode="interp")
    return grid, s, ds


def plateau(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, smooth: float = 0.03, tol: float = 0.1,
            window: float | None = None) -> Plateau:
    """Level and duration of the plateau before the phase change.

    The level is the smoothed value at the flattest point before the crossing
    (before the last evaluation if the run never crosses); the plateau extends
    from there in both directions while the smoothed curve stays within
    ``tol * |level - threshold|`` of the level.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        rule: the phase-change rule (its threshold sets the band's scale).
        smooth: smoothing window as a fraction of the x range.
        tol: half-width of the band, as a fraction of the level's distance to the threshold.

    Returns:
        A :class:`Plateau` (level NaN and duration 0 when the curve crosses at once).

    Example:
        >>> xs = list(range(0, 101, 1))
        >>> ys = [0.69 if v < 60 else 0.05 for v in xs]
        >>> p = plateau(xs, ys, PhaseRule(), smooth=0)
        >>> round(p.level, 2), p.start, p.end, p.ongoing
        (0.69, 0.0, 59.0, False)
    """
    xa, ya = clean_curve(x, y)
    crossing = threshold_time(xa, ya, rule)
    if xa.size == 0:
        return Plateau(level=math.nan, start=math.nan, end=math.nan, duration=0.0, ongoing=False)
    grid, s, ds = smooth_curve(xa, ya, smooth=smooth, window=window)
    before = np.flatnonzero(grid < crossing.time) if crossing.event else np.arange(grid.size)
    if before.size == 0:
        return Plateau(level=math.nan, start=math.nan, end=math.nan, duration=0.0, ongoing=False)
    i = int(before[np.argmin(np.abs(ds[before]))])
    level = float(s[i])
    band = max(tol * abs(level - rule.threshold), 1e-12)
    inside = np.abs(s - level) <= band
    lo = i
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = i
    while hi + 1 <= before[-1] and inside[hi + 1]:
        hi += 1
    return Plateau(level=level, start=float(grid[lo]), end=float(grid[hi]),
                   duration=float(grid[hi] - grid[lo]), ongoing=not crossing.event)


def transient_end(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, smooth: float = 0.03,
                  window: float | None = None) -> float:
    """Where the early transient ends: the first local minimum of the smoothed speed towards the threshold side.

    Training starts with a quick drop (ln 5 to the ln 2 plateau on the few-shot
    task) that is not the phase change; the curve's speed towards the threshold
    side falls after it, then rises again in the phase change.  Found from the
    curve's shape alone (never from where it crossed the threshold); the first
    evaluation when the speed has no interior minimum.

    Example:
        >>> import numpy as np
        >>> xs = np.arange(0, 101.0)
        >>> ys = 0.7 + np.exp(-xs / 3) - 0.6 / (1 + np.exp(-(xs - 60) / 3))
        >>> 10 <= transient_end(xs, ys, PhaseRule(), smooth=0) <= 40
        True
    """
    grid, _, ds = smooth_curve(x, y, smooth=smooth, window=window)
    if grid.size < 3:
        return float(grid[0]) if grid.size else math.nan
    v = rule.sign * ds
    # A minimum must rise by more than rounding noise after it: on a flat tail the speed is ~1e-17 and its
    # last-bit wiggles (which differ between CPUs and math libraries) are not a transient's end.
    tol = 1e-9 * float(np.max(np.abs(v)))
    interior = np.flatnonzero((v[1:-1] <= v[:-2]) & (v[1:-1] < v[2:] - tol)) + 1
    return float(grid[interior[0]]) if interior.size and v[0] > v[interior[0]] else float(grid[0])


def steepest_descent_time(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, smooth: float = 0.03,
                          window: float | None = None) -> PhaseTime:
    """The point of steepest descent (ascent for ``direction="above"``) of the smoothed curve.

    The search covers the monotone stretch of the *smoothed* curve in which it
    passes the threshold level (so the early transient, ln 5 down to ln 2, is
    not mistaken for the phase change); it does not look at where the raw
    curve first crossed.  Censored at the last evaluation when the run never
    crossed under its rule; failed ("no drop") when the smoothed curve never
    passes the threshold level.

    Example:
        >>> xs = list(range(0, 101))
        >>> ys = [0.69 if v < 50 else 0.05 for v in xs]
        >>> steepest_descent_time(xs, ys, PhaseRule(), smooth=0).time
        49.0
    """
    xa, ya = clean_curve(x, y)
    crossing = threshold_time(xa, ya, rule)
    if not crossing.event:
        return PhaseTime(estimator="steepest", time=crossing.time, event=False, note=crossing.note)
    grid, s, ds = smooth_curve(xa, ya, smooth=smooth, window=window)
    past = np.asarray(rule.crossed(s), bool).reshape(-1)
    entries = np.flatnonzero(past & ~np.r_[False, past[:-1]])  # where the smoothed curve passes the level
    if grid.size < 2 or entries.size == 0 or entries[-1] == 0:
        return PhaseTime(estimator="steepest", time=math.nan, event=False,
                         note="no drop: the smoothed curve never passes the threshold level")
    c = int(entries[-1])  # the last entry: the one the run keeps (it ends past the threshold)
    going = rule.sign * ds > 0  # moving towards the threshold side
    lo, hi = c, c
    while lo > 0 and going[lo - 1]:
        lo -= 1
    while hi + 1 < grid.size and going[hi + 1]:
        hi += 1
    lo = max(lo, int(np.searchsorted(grid, transient_end(xa, ya, rule, smooth=smooth, window=window))))
    window = np.arange(min(lo, hi), hi + 1)
    i = int(window[np.argmax(rule.sign * ds[window])])
    if i == 0:
        return PhaseTime(estimator="steepest", time=math.nan, event=False,
                         note="onset before the first evaluation (steepest there)")
    return PhaseTime(estimator="steepest", time=float(grid[i]), event=True)


def _logistic(x: NDArray[np.float64], start: float, end: float, mid: float, log_scale: float) -> NDArray[np.float64]:
    return end + (start - end) * expit(-(x - mid) / np.exp(log_scale))


def _logistic_jac(x: NDArray[np.float64], start: float, end: float, mid: float, log_scale: float) -> NDArray[np.float64]:
    scale = np.exp(log_scale)
    g = expit(-(x - mid) / scale)
    dg = (start - end) * g * (1 - g)
    return np.stack([g, 1 - g, dg / scale, dg * (x - mid) / scale], axis=1)  # (N, 4)


def fit_sigmoid(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, start: float | None = None,
                min_r2: float = MIN_R2) -> SigmoidFit:
    """Least-squares fit of a four-parameter logistic to the curve, blind to where it crossed the threshold.

    Several fits start from midpoints spread evenly over the evaluations (the
    best one is kept); the midpoint is bounded only to within one run length
    outside the evaluations, the scale is fitted on a log scale.  The fit fails,
    with its reason, when the optimiser does not converge, when it explains
    less than ``min_r2`` of the variance ("bad fit"), when the fitted change is
    slower than the whole curve or does not fall (rise) past the threshold ("no
    drop"), or when its midpoint lies outside the evaluations.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        rule: the phase-change rule (its direction and level judge the fit, never its crossing time).
        start: fit only evaluations at or after this many sequences (default: all).
        min_r2: smallest acceptable coefficient of determination.

    Returns:
        A :class:`SigmoidFit`.

    Example:
        >>> import numpy as np
        >>> xs = np.linspace(0, 100, 101)
        >>> f = fit_sigmoid(xs, 0.05 + 0.64 / (1 + np.exp((xs - 40) / 3)), PhaseRule())
        >>> round(f.midpoint, 3), round(f.scale, 3), round(f.r2, 6)
        (40.0, 3.0, 1.0)
        >>> fit_sigmoid(xs, 0.5 + 0.19 / (1 + np.exp((xs - 40) / 3)), PhaseRule()).reason  # stops at 0.5
        'no drop: the fitted curve does not fall past 0.277'
    """
    xa, ya = clean_curve(x, y)
    if start is not None and math.isfinite(start):
        keep = xa >= start
        xa, ya = xa[keep], ya[keep]
    if xa.size < 5:
        return SigmoidFit(success=False, reason=f"bad fit: {xa.size} evaluations, need at least 5")
    if np.ptp(ya) == 0:
        return SigmoidFit(success=False, reason="no drop: the curve is flat")
    # Fit on x rescaled to [0, 1] (sequences seen are ~1e5: the optimiser converges far faster on unit scale).
    x0, span = float(xa[0]), float(xa[-1] - xa[0])
    u = (xa - x0) / span
    du = float(np.min(np.diff(u)))
    q_lo, q_hi = np.quantile(ya, [0.05, 0.95])
    start0, end0 = (q_hi, q_lo) if rule.direction == "below" else (q_lo, q_hi)
    lo = [-np.inf, -np.inf, -1.0, math.log(du / 10)]
    hi = [np.inf, np.inf, 2.0, 0.0]
    ss_tot = float(np.sum((ya - ya.mean()) ** 2))
    best: tuple[float, np.ndarray] | None = None
    for mid0 in np.linspace(0.05, 0.95, 7):
        p0 = [start0, end0, mid0, math.log(min(max(1 / 50, du), 1.0))]
        # least_squares returns its last iterate even when it stops at max_nfev, so a fit that runs away
        # (e.g. towards a midpoint before the first evaluation) is judged below, with its reason.
        with np.errstate(over="ignore"):
            res = least_squares(lambda p: _logistic(u, *p) - ya, p0, jac=lambda p: _logistic_jac(u, *p),
                                bounds=(lo, hi), max_nfev=400)
        popt = res.x
        sse = float(np.sum((ya - _logistic(u, *popt)) ** 2))
        if np.isfinite(sse) and (best is None or sse < best[0]):
            best = (sse, popt)
    if best is None:
        return SigmoidFit(success=False, reason="bad fit: the optimiser did not converge")
    sse, popt = best
    popt = np.array([popt[0], popt[1], x0 + popt[2] * span, popt[3] + math.log(span)])
    a, b, mid, log_scale = (float(v) for v in popt)
    scale = math.exp(log_scale)
    r2 = 1.0 - sse / ss_tot
    fit = dict(midpoint=mid, onset=mid - 2 * scale, width=2 * math.log(9) * scale, scale=scale, start_level=a,
               end_level=b, r2=r2)
    verb = "fall" if rule.direction == "below" else "rise"
    if r2 < min_r2:
        return SigmoidFit(success=False, reason=f"bad fit: R² = {r2:.2f} < {min_r2:g}", **fit)
    if fit["width"] > span:
        return SigmoidFit(success=False, reason=f"no drop: the fitted change is slower than the whole curve (10–90 % "
                          f"width {fit['width']:.3g} > {span:.3g}), a trend, not a phase change", **fit)
    if not (rule.sign * (b - a) > 0 and rule.crossed(b) and not rule.crossed(a)):
        return SigmoidFit(success=False, reason=f"no drop: the fitted curve does not {verb} past {rule.threshold:.3g}",
                          **fit)
    if mid < xa[0]:
        return SigmoidFit(success=False, reason=f"onset before the first evaluation (midpoint at {mid:.3g})", **fit)
    if mid > xa[-1]:
        return SigmoidFit(success=False, reason=f"bad fit: midpoint after the last evaluation ({mid:.3g})", **fit)
    return SigmoidFit(success=True, **fit)


def change_point_time(x: ArrayLike, y: ArrayLike, rule: PhaseRule) -> PhaseTime:
    """Least-squares single change point in the mean; the first evaluation after the change.

    Splits the curve into two constant segments minimising the total squared
    error (cumulative sums make this O(N)).  Censored when the run never crosses.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        rule: the phase-change rule.

    Returns:
        A :class:`PhaseTime` with ``estimator="changepoint"``.

    Example:
        >>> change_point_time([0, 10, 20, 30, 40], [0.7, 0.7, 0.7, 0.1, 0.1], PhaseRule()).time
        30.0
    """
    xa, ya = clean_curve(x, y)
    crossing = threshold_time(xa, ya, rule)
    if not crossing.event:
        return PhaseTime(estimator="changepoint", time=crossing.time, event=False, note=crossing.note)
    if ya.size < 2:
        return PhaseTime(estimator="changepoint", time=crossing.time, event=True, note="single evaluation")
    return PhaseTime(estimator="changepoint", time=_change_point(xa, ya), event=True)


def _change_point(xa: NDArray[np.float64], ya: NDArray[np.float64]) -> float:
    """Where the second of two constant segments with the least total squared error starts (O(N) by cumulative sums)."""
    n = ya.size
    k = np.arange(1, n)  # second segment starts at index k
    c1, c2 = np.cumsum(ya), np.cumsum(ya**2)
    left = c2[k - 1] - c1[k - 1] ** 2 / k
    right = (c2[-1] - c2[k - 1]) - (c1[-1] - c1[k - 1]) ** 2 / (n - k)
    return float(xa[int(k[np.argmin(left + right)])])


def around_drop(x: NDArray[np.float64], start: float, steepest: float) -> NDArray[np.bool_]:
    """The evaluations the shape fits use: from the end of the early transient to four times as far past the
    steepest point as the transient's end is before it (the drop and its tail, in proportion to when the drop
    came, never to how long the run went on).

    Example:
        >>> around_drop(np.arange(0, 2000.0, 10), 100, 300).nonzero()[0][[0, -1]].tolist()
        [10, 110]
    """
    after = x >= (start if math.isfinite(start) else -math.inf)
    if not (math.isfinite(start) and math.isfinite(steepest)) or steepest <= start:
        return after
    near = after & (x <= steepest + 4 * (steepest - start))
    return near if near.sum() >= 10 else after  # too few evaluations to fit a shape: everything after the transient


def estimate_phase(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, smooth: float = 0.03,
                   plateau_tol: float = 0.1, windows: Iterable[Span] = (), window: float | None = None) -> PhaseEstimates:
    """All estimators, the sigmoid fit and the plateau for one curve.

    With ``rule.outside_windows`` every estimator sees only the evaluations outside ``windows`` (the
    arm's intervention windows).  The shape estimators do not depend on how long the run went on:
    the smoothing window is ``window`` sequences (the same for every run of a study; the older
    ``smooth`` fraction of the run's range when None), and the sigmoid and the change point are fitted
    on the evaluations around the drop (:func:`around_drop`: from the early transient's end to four
    times as far past the steepest point as that end is before it), so a run stopped after its phase change and
    one trained on get the same times, and an early crosser's short drop is not drowned by a long tail.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        rule: the phase-change rule; it decides whether the run had its phase change.
        smooth: smoothing window as a fraction of the x range (when ``window`` is None).
        plateau_tol: plateau band as a fraction of the level's distance to the threshold.
        windows: the arm's intervention windows ``[(start, stop), ...]``.
        window: smoothing window in sequences seen.

    Returns:
        A :class:`PhaseEstimates`; its ``times`` follow :data:`ESTIMATORS`.

    Example:
        >>> xs = list(range(0, 101))
        >>> est = estimate_phase(xs, [0.69 if v < 50 else 0.05 for v in xs], PhaseRule())
        >>> {t.estimator: t.time for t in est.times}["threshold"]
        50.0
    """
    if rule.outside_windows:
        xa, ya = outside(x, y, windows)
    else:
        xa, ya = clean_curve(x, y)
    crossing = crossing_time(x, y, rule, windows=windows)  # same evaluations as (xa, ya)
    thr = PhaseTime(estimator="threshold", time=crossing.time, event=crossing.event, note=crossing.note)
    plat = plateau(xa, ya, rule, smooth=smooth, tol=plateau_tol, window=window)
    start = transient_end(xa, ya, rule, smooth=smooth, window=window)
    steep = steepest_descent_time(xa, ya, rule, smooth=smooth, window=window)
    near = around_drop(xa, start, steep.time)
    sig = fit_sigmoid(xa[near], ya[near], rule)
    if thr.event:
        if sig.success:
            mid = PhaseTime(estimator="sigmoid_mid", time=sig.midpoint, event=True)
            if sig.onset >= xa[0]:
                onset = PhaseTime(estimator="sigmoid_onset", time=sig.onset, event=True)
            else:
                onset = PhaseTime(estimator="sigmoid_onset", time=math.nan, event=False,
                                  note=f"onset before the first evaluation ({sig.onset:.6g} < {xa[0]:.6g})")
        else:
            mid = PhaseTime(estimator="sigmoid_mid", time=math.nan, event=False, note=sig.reason)
            onset = PhaseTime(estimator="sigmoid_onset", time=math.nan, event=False, note=sig.reason)
    else:
        mid = PhaseTime(estimator="sigmoid_mid", time=thr.time, event=False, note=thr.note)
        onset = PhaseTime(estimator="sigmoid_onset", time=thr.time, event=False, note=thr.note)
    change = change_point_time(xa, ya, rule)  # censored like the rule when the run never crossed
    if thr.event and near.sum() >= 2:
        change = PhaseTime(estimator="changepoint", time=_change_point(xa[near], ya[near]), event=True)
    times = (thr, steep, mid, onset, change)
    return PhaseEstimates(rule=rule, times=times, sigmoid=sig, plateau=plat,
                          last_eval=float(xa[-1]) if xa.size else math.nan, n_evals=int(xa.size), crossing=crossing)


def smoothing_window(budgets: Iterable[float], fraction: float = 0.03) -> float | None:
    """The smoothing window of a study's shape estimators, in sequences: ``fraction`` of its shortest planned
    budget (the same for every run, whatever it stopped at); None when no budget is known.

    Example:
        >>> smoothing_window([600_000, 2_000_000])
        18000.0
    """
    known = [float(b) for b in budgets if b and math.isfinite(float(b))]
    return fraction * min(known) if known else None
