"""Phase-change time of one training curve, by several estimators.

Why this file exists: the causal claim of a clamping study is about *when* the
induction head forms, so every run needs a defensible phase-change time.  The
primary estimator is Singh et al.'s threshold rule (first evaluation at which
the training loss falls below 0.4·ln 2); the others re-time the same event to
show that conclusions do not hinge on the rule:

- ``threshold``: first evaluation at which the metric is strictly past the
  threshold (below it, or above it for scores such as induction strength);
- ``steepest``: the point of steepest descent (ascent) of the smoothed curve
  (Savitzky–Golay smoothing on a uniform grid), searched from the end of the
  plateau to the end of the drop that contains the crossing;
- ``sigmoid_mid`` / ``sigmoid_onset``: midpoint and tangent-line onset
  (midpoint − 2·scale) of a four-parameter logistic fitted by least squares;
- ``changepoint``: the least-squares single change point in the mean (the
  first evaluation of the second segment).

Whether a run had its phase change at all is decided by the threshold rule
alone: a run that never crosses is right-censored at its last evaluation under
*every* estimator (never dropped, never given an invented time).  The robustness
estimators only re-time crossings.  A sigmoid fit that fails leaves its time
missing (NaN, not censored) with a note.

The plateau before the drop: its level is the smoothed value at the flattest
point before the crossing, and it extends both ways while the smoothed curve
stays within ``plateau_tol`` × |level − threshold| of that level.

All functions are pure: they copy what they need and never mutate inputs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.signal import savgol_filter
from scipy.special import expit

from clamp.errors import ConfigError

Direction = Literal["below", "above"]
ESTIMATORS: tuple[str, ...] = ("threshold", "steepest", "sigmoid_mid", "sigmoid_onset", "changepoint")
DEFAULT_THRESHOLD = 0.4 * math.log(2.0)  # Singh et al.'s learning-time threshold on the training loss
_MAX_GRID = 20_000  # points on the uniform grid used for smoothing


@dataclass(frozen=True, kw_only=True)
class PhaseRule:
    """The rule that says when a run's phase change happens, for one metric.

    Args:
        metric: metric name in the metrics CSV (e.g. ``train/loss``, ``induction/L1H0``).
        threshold: the level to cross.
        direction: ``"below"`` (loss falls below) or ``"above"`` (score rises above).

    Example:
        >>> PhaseRule().metric, round(PhaseRule().threshold, 4), PhaseRule().direction
        ('train/loss', 0.2773, 'below')
        >>> PhaseRule.from_dict({"metric": "induction/L1H0", "threshold": 0.5, "direction": "above"}).crossed(0.7)
        True
    """

    metric: str = "train/loss"
    threshold: float = DEFAULT_THRESHOLD
    direction: Direction = "below"

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError("PhaseRule.metric must be a non-empty metric name such as 'train/loss'.")
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise ConfigError(f"PhaseRule.threshold={self.threshold!r} must be a finite number.")
        if self.direction not in ("below", "above"):
            raise ConfigError(f"PhaseRule.direction={self.direction!r} is unknown; choose 'below' or 'above'.")

    def crossed(self, y: ArrayLike) -> NDArray[np.bool_] | bool:
        """Whether value(s) ``y`` are strictly past the threshold (NaN never is)."""
        arr = np.asarray(y, dtype=float)
        out = arr < self.threshold if self.direction == "below" else arr > self.threshold
        return bool(out) if out.ndim == 0 else out

    @property
    def sign(self) -> float:
        """-1 for a falling metric, +1 for a rising one."""
        return -1.0 if self.direction == "below" else 1.0

    def describe(self) -> str:
        """Short text such as ``train/loss < 0.277``."""
        return f"{self.metric} {'<' if self.direction == 'below' else '>'} {self.threshold:.3g}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PhaseRule":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict):
            raise ConfigError(f"A phase rule must be a dict with keys {sorted(known)}; got {d!r}.")
        if set(d) - known:
            raise ConfigError(f"Phase rule got unknown keys {sorted(set(d) - known)}; valid keys are {sorted(known)}.")
        return cls(**d)


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
    """

    success: bool
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

    def by_estimator(self) -> dict[str, PhaseTime]:
        return {t.estimator: t for t in self.times}


def clean_curve(x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sorted copy of a curve with non-finite values dropped and repeated x's kept last.

    Args:
        x: sequences seen at each evaluation, shape ``[N]``.
        y: metric value at each evaluation, shape ``[N]``.

    Returns:
        ``(x, y)`` as new float arrays, x strictly increasing.

    Example:
        >>> clean_curve([2, 0, 1, 1], [0.5, float("nan"), 0.9, 0.8])
        (array([1., 2.]), array([0.8, 0.5]))
    """
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length; got {xa.size} and {ya.size}.")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    # Keep the last value recorded at each x (a resumed run may repeat an evaluation).
    last = np.r_[xa[1:] != xa[:-1], True] if xa.size else np.zeros(0, bool)
    return xa[last], ya[last]


def threshold_time(x: ArrayLike, y: ArrayLike, rule: PhaseRule) -> PhaseTime:
    """Singh et al.'s rule: the first evaluation strictly past the threshold, else censored at the last.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        rule: metric threshold and direction.

    Returns:
        A :class:`PhaseTime` with ``estimator="threshold"``.

    Example:
        >>> threshold_time([0, 10, 20, 30], [0.7, 0.6, 0.2, 0.1], PhaseRule()).time
        20.0
        >>> threshold_time([0, 10, 20], [0.7, 0.7, 0.7], PhaseRule())
        PhaseTime(estimator='threshold', time=20.0, event=False, note='never crossed')
    """
    xa, ya = clean_curve(x, y)
    if xa.size == 0:
        return PhaseTime(estimator="threshold", time=math.nan, event=False, note="no finite evaluations")
    hit = np.flatnonzero(rule.crossed(ya))
    if hit.size == 0:
        return PhaseTime(estimator="threshold", time=float(xa[-1]), event=False, note="never crossed")
    return PhaseTime(estimator="threshold", time=float(xa[hit[0]]), event=True)


def smooth_curve(x: ArrayLike, y: ArrayLike, *, smooth: float = 0.03) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The curve on a uniform grid, Savitzky–Golay smoothed, with its derivative.

    Evaluations may be unevenly spaced (dense around the phase change), so the
    curve is first interpolated onto a grid with the smallest spacing (at most
    20 000 points); the window covers ``smooth`` of the x range (quadratic fit).

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        smooth: window as a fraction of the x range; 0 disables smoothing.

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
    window = int(round(smooth * n)) | 1  # odd
    if smooth <= 0 or n < 5 or window < 5:
        return grid, values, np.gradient(values, dx)
    window = min(window, n if n % 2 else n - 1)
    s = savgol_filter(values, window, 2, mode="interp")
    ds = savgol_filter(values, window, 2, deriv=1, delta=dx, mode="interp")
    return grid, s, ds


def plateau(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, smooth: float = 0.03, tol: float = 0.1) -> Plateau:
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
    grid, s, ds = smooth_curve(xa, ya, smooth=smooth)
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


def steepest_descent_time(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, smooth: float = 0.03,
                          plateau_tol: float = 0.1) -> PhaseTime:
    """The point of steepest descent (ascent for ``direction="above"``) of the smoothed curve.

    The search runs from the end of the plateau to the end of the monotone
    stretch containing the threshold crossing, so an early transient (the
    drop from ln 5 to ln 2 at the start of training) is not mistaken for the
    phase change.  Censored at the last evaluation when the run never crosses.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        rule: the phase-change rule.
        smooth: smoothing window as a fraction of the x range.
        plateau_tol: passed to :func:`plateau`.

    Returns:
        A :class:`PhaseTime` with ``estimator="steepest"``.

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
    grid, s, ds = smooth_curve(xa, ya, smooth=smooth)
    p = plateau(xa, ya, rule, smooth=smooth, tol=plateau_tol)
    start = 0 if math.isnan(p.end) else int(np.searchsorted(grid, p.end))
    c = min(int(np.searchsorted(grid, crossing.time)), grid.size - 1)
    going = rule.sign * ds > 0  # moving towards the threshold side
    end = c
    while end + 1 < grid.size and going[end + 1]:
        end += 1
    start = min(start, c)
    window = np.arange(start, end + 1)
    i = int(window[np.argmax(rule.sign * ds[window])])
    return PhaseTime(estimator="steepest", time=float(grid[i]), event=True)


def _logistic(x: NDArray[np.float64], start: float, end: float, mid: float, log_scale: float) -> NDArray[np.float64]:
    return end + (start - end) * expit(-(x - mid) / np.exp(log_scale))


def fit_sigmoid(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, start: float | None = None) -> SigmoidFit:
    """Least-squares fit of a four-parameter logistic to the curve from ``start`` on.

    The curve goes from ``start_level`` to ``end_level`` around ``midpoint``,
    which is kept inside the fitted range; the scale is fitted on a log scale
    so it stays positive.  :func:`estimate_phase` starts the fit at the
    plateau's start, so the early transient (ln 5 down to ln 2) is left out.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        rule: the phase-change rule (sets the starting guesses).
        start: fit only evaluations at or after this many sequences (default: all).

    Returns:
        A :class:`SigmoidFit`; ``success`` False when the optimiser fails or there are fewer than 5 points.

    Example:
        >>> import numpy as np
        >>> xs = np.linspace(0, 100, 101)
        >>> f = fit_sigmoid(xs, 0.05 + 0.64 / (1 + np.exp((xs - 40) / 3)), PhaseRule())
        >>> round(f.midpoint, 3), round(f.scale, 3), round(f.r2, 6)
        (40.0, 3.0, 1.0)
    """
    xa, ya = clean_curve(x, y)
    if start is not None and math.isfinite(start):
        keep = xa >= start
        xa, ya = xa[keep], ya[keep]
    if xa.size < 5 or np.ptp(ya) == 0:
        return SigmoidFit(success=False)
    span = float(xa[-1] - xa[0])
    crossing = threshold_time(xa, ya, rule)
    mid0 = crossing.time if crossing.event else float(np.median(xa))
    q_lo, q_hi = np.quantile(ya, [0.05, 0.95])
    start0, end0 = (q_hi, q_lo) if rule.direction == "below" else (q_lo, q_hi)
    dx = float(np.min(np.diff(xa)))
    p0 = [start0, end0, min(max(mid0, xa[0]), xa[-1]), math.log(min(max(span / 50, dx), span))]
    lo = [-np.inf, -np.inf, xa[0], math.log(dx / 10)]
    hi = [np.inf, np.inf, xa[-1], math.log(span)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(_logistic, xa, ya, p0=p0, bounds=(lo, hi), maxfev=5000)
    except (RuntimeError, ValueError):
        return SigmoidFit(success=False)
    start, end, mid, log_scale = (float(v) for v in popt)
    scale = math.exp(log_scale)
    resid = ya - _logistic(xa, *popt)
    ss_tot = float(np.sum((ya - ya.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot
    return SigmoidFit(success=True, midpoint=mid, onset=mid - 2 * scale, width=2 * math.log(9) * scale,
                      scale=scale, start_level=start, end_level=end, r2=r2)


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
    n = ya.size
    if n < 2:
        return PhaseTime(estimator="changepoint", time=crossing.time, event=True, note="single evaluation")
    k = np.arange(1, n)  # second segment starts at index k
    c1, c2 = np.cumsum(ya), np.cumsum(ya**2)
    left = c2[k - 1] - c1[k - 1] ** 2 / k
    right = (c2[-1] - c2[k - 1]) - (c1[-1] - c1[k - 1]) ** 2 / (n - k)
    best = int(k[np.argmin(left + right)])
    return PhaseTime(estimator="changepoint", time=float(xa[best]), event=True)


def estimate_phase(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, smooth: float = 0.03,
                   plateau_tol: float = 0.1) -> PhaseEstimates:
    """All estimators, the sigmoid fit and the plateau for one curve.

    Args:
        x: sequences seen, shape ``[N]``.
        y: metric values, shape ``[N]``.
        rule: the phase-change rule; its threshold decides whether the run crossed.
        smooth: smoothing window as a fraction of the x range.
        plateau_tol: plateau band as a fraction of the level's distance to the threshold.

    Returns:
        A :class:`PhaseEstimates`; its ``times`` follow :data:`ESTIMATORS`.

    Example:
        >>> xs = list(range(0, 101))
        >>> est = estimate_phase(xs, [0.69 if v < 50 else 0.05 for v in xs], PhaseRule())
        >>> {t.estimator: t.time for t in est.times}["threshold"]
        50.0
    """
    xa, ya = clean_curve(x, y)
    thr = threshold_time(xa, ya, rule)
    plat = plateau(xa, ya, rule, smooth=smooth, tol=plateau_tol)
    sig = fit_sigmoid(xa, ya, rule, start=plat.start)
    if thr.event:
        if sig.success:
            first = float(xa[0])
            onset_note = "onset before first evaluation; clipped" if sig.onset < first else ""
            mid = PhaseTime(estimator="sigmoid_mid", time=sig.midpoint, event=True)
            onset = PhaseTime(estimator="sigmoid_onset", time=max(sig.onset, first), event=True, note=onset_note)
        else:
            mid = PhaseTime(estimator="sigmoid_mid", time=math.nan, event=False, note="sigmoid fit failed")
            onset = PhaseTime(estimator="sigmoid_onset", time=math.nan, event=False, note="sigmoid fit failed")
    else:
        mid = PhaseTime(estimator="sigmoid_mid", time=thr.time, event=False, note=thr.note)
        onset = PhaseTime(estimator="sigmoid_onset", time=thr.time, event=False, note=thr.note)
    times = (
        thr,
        steepest_descent_time(xa, ya, rule, smooth=smooth, plateau_tol=plateau_tol),
        mid,
        onset,
        change_point_time(xa, ya, rule),
    )
    return PhaseEstimates(rule=rule, times=times, sigmoid=sig, plateau=plat,
                          last_eval=float(xa[-1]) if xa.size else math.nan, n_evals=int(xa.size))
