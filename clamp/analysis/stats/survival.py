"""Summaries of phase-change times when some runs never crossed (right-censored).

Why this file exists: a run still on its plateau at the end of training tells
us its phase change comes *later than* its last evaluation, not when.  Medians
and restricted means must then come from the Kaplan–Meier estimate
(``scipy.stats.ecdf`` on ``scipy.stats.CensoredData``), and a median that the
survival curve never reaches is reported as infinite (not reached), never
invented.  Everything here is a thin, pure layer over scipy.

Conventions: ``times`` are sequences seen; ``events[i]`` is True when run i
crossed at ``times[i]`` and False when it was censored there.  Survival S(t) is
the fraction of runs that have not yet crossed by t.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import CensoredData, ecdf


def as_sample(times: ArrayLike, events: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Validated float/bool copies of a sample of phase times.

    Example:
        >>> as_sample([3, 1], [1, 0])
        (array([3., 1.]), array([ True, False]))
    """
    t = np.array(times, dtype=float).ravel()
    e = np.array(events, dtype=bool).ravel()
    if t.shape != e.shape:
        raise ValueError(f"times and events must have the same length; got {t.size} and {e.size}.")
    if not np.all(np.isfinite(t)):
        raise ValueError("times must be finite (drop runs with no time before calling).")
    return t, e


def km_curve(times: ArrayLike, events: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Kaplan–Meier survival (fraction not yet crossed) as a right-continuous step function.

    Returns:
        ``(t, s)``: S(u) = s[i] for t[i] <= u < t[i+1], and 1 before t[0].

    Example:
        >>> t, s = km_curve([1, 2, 3, 4], [True, True, False, True])
        >>> t.tolist(), s.tolist()
        ([1.0, 2.0, 3.0, 4.0], [0.75, 0.5, 0.5, 0.0])
    """
    t, e = as_sample(times, events)
    if t.size == 0:
        return np.zeros(0), np.zeros(0)
    if not np.any(e):
        return np.array([t.max()]), np.array([1.0])
    sf = ecdf(CensoredData(uncensored=t[e], right=t[~e])).sf
    return np.asarray(sf.quantiles, dtype=float), np.asarray(sf.probabilities, dtype=float)


def km_median(times: ArrayLike, events: ArrayLike) -> float:
    """Median phase-change time; Kaplan–Meier when any run is censored, ``inf`` when not reached.

    The median is the smallest time at which S(t) <= 1/2; where S sits exactly
    at 1/2 it is the midpoint to the next crossing, so with no censoring this
    equals the ordinary sample median.

    Args:
        times: phase times or censoring times, shape ``[n]``.
        events: True where the run crossed, shape ``[n]``.

    Returns:
        The median in sequences seen; ``inf`` if fewer than half the runs crossed
        (not reached); NaN for an empty sample.

    Example:
        >>> km_median([1, 2, 3, 4], [True] * 4)
        2.5
        >>> km_median([1, 5, 5], [True, False, False])
        inf
    """
    t, e = as_sample(times, events)
    if t.size == 0:
        return math.nan
    if np.all(e):
        return float(np.median(t))
    return _median_of_curve(*km_curve(t, e))


def _median_of_curve(q: NDArray[np.float64], s: NDArray[np.float64]) -> float:
    below = np.flatnonzero(s <= 0.5 + 1e-12)
    if below.size == 0:
        return math.inf
    i = int(below[0])
    if math.isclose(s[i], 0.5, abs_tol=1e-12):
        later = np.flatnonzero(s[i:] < 0.5 - 1e-12)
        if later.size:
            return float((q[i] + q[i + int(later[0])]) / 2)
    return float(q[i])


def rmst(times: ArrayLike, events: ArrayLike, tau: float) -> float:
    """Restricted mean phase-change time: the area under the Kaplan–Meier curve from 0 to ``tau``.

    It is the mean of min(T, tau), well defined with censoring as long as
    ``tau`` is within follow-up.  (scipy gives the curve; the area of a step
    function is a sum.)

    Args:
        times: phase times or censoring times, shape ``[n]``.
        events: True where the run crossed, shape ``[n]``.
        tau: horizon in sequences seen.

    Returns:
        The restricted mean in sequences seen (NaN for an empty sample).

    Example:
        >>> rmst([2, 4], [True, True], tau=10)
        3.0
        >>> rmst([2, 4], [True, False], tau=4)
        3.0
    """
    t, e = as_sample(times, events)
    if t.size == 0:
        return math.nan
    if np.all(e):
        return float(np.mean(np.minimum(t, tau)))
    return _area_of_curve(*km_curve(t, e), tau)


def km_summary(times: ArrayLike, events: ArrayLike, tau: float) -> tuple[float, float]:
    """``(km_median, rmst)`` from one Kaplan–Meier fit (what the bootstrap needs per resample).

    Example:
        >>> km_summary([2, 4], [True, False], tau=4)
        (2.0, 3.0)
    """
    t, e = as_sample(times, events)
    if t.size == 0:
        return math.nan, math.nan
    if np.all(e):
        return float(np.median(t)), float(np.mean(np.minimum(t, tau)))
    q, s = km_curve(t, e)
    return _median_of_curve(q, s), _area_of_curve(q, s, tau)


def _area_of_curve(q: NDArray[np.float64], s: NDArray[np.float64], tau: float) -> float:
    edges = np.concatenate([[0.0], np.minimum(q, tau), [tau]])
    heights = np.concatenate([[1.0], s])
    return float(np.sum(heights * np.diff(np.maximum.accumulate(edges))))
