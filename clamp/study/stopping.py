"""Stopping a run once its phase change is behind it.

Why this file exists: in a clamping study most arms cross early while a few
(the control, the previous-token arm) need several times longer; training every
run to the longest budget spends most of the compute on curves whose phase
change is long over.  :class:`StopAfterPhase` is the study setting that ends a
run a margin after it crosses the study's primary :class:`~clamp.study.design.PhaseRule`;
:func:`stop_point` is the one pure function that says where, used by the worker
(:mod:`clamp.execution.pack`) while training and by tests on hand-built curves.

A stopped run *crossed*: its threshold phase time is exactly that of the same run
trained to the end (its metrics up to the stop are the same numbers), so the
statistics treat it as an event, never as censored.  Its curves end where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from clamp.errors import ConfigError
from clamp.study.fields import check_fields


@dataclass(frozen=True, kw_only=True)
class StopAfterPhase:
    """End each run ``margin + relative * t`` sequences after its phase change at ``t``.

    The phase change is the first evaluation at which the study's primary phase rule
    (``Study.phase[0]``, by default training loss below 0.4 ln 2) is crossed; the run
    stops at the first evaluation at or past that point plus the margin (so the margin
    is at least one evaluation when it is positive).

    Args:
        margin: sequences to keep training after the crossing (>= 0).  Leave enough for the
            robustness estimators (sigmoid, steepest descent) to see the end of the drop.
        relative: plus this fraction of the crossing time (>= 0); late crossings have wider drops.

    Example:
        >>> StopAfterPhase(margin=20_000, relative=0.5).stop_at(40_000)
        80000
    """

    margin: int = 0
    relative: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.margin < 0:
            raise ConfigError(f"StopAfterPhase.margin={self.margin} must be >= 0 sequences after the crossing.")
        if not (math.isfinite(self.relative) and self.relative >= 0):
            raise ConfigError(f"StopAfterPhase.relative={self.relative} must be a finite fraction >= 0 of the crossing time.")

    def stop_at(self, crossed: int) -> int:
        """Sequences seen from which a run that crossed at ``crossed`` stops (at its next evaluation)."""
        return int(crossed + self.margin + math.ceil(self.relative * crossed))

    def to_dict(self) -> dict:
        return {"margin": int(self.margin), "relative": float(self.relative)}


def crossed(value: float, threshold: float, direction: str) -> bool:
    """Whether ``value`` is strictly past ``threshold`` (NaN never is); the analysis's threshold rule."""
    if not math.isfinite(value):
        return False
    return value < threshold if direction == "below" else value > threshold


def stop_point(seen: Sequence[int], values: Sequence[float], *, threshold: float, direction: str,
               rule: StopAfterPhase) -> tuple[int | None, int | None]:
    """Where a curve crosses and where a run following it stops, from its evaluations.

    Args:
        seen: evaluation points (sequences seen), increasing.
        values: the phase metric at those points.
        threshold, direction: the primary phase rule.
        rule: the stopping setting.

    Returns:
        ``(crossed_at, stop_at)``: the first evaluation past the threshold and the first evaluation
        at or after ``rule.stop_at(crossed_at)``; either is None when not reached.

    Example:
        >>> stop_point([0, 10, 20, 30, 40], [0.7, 0.7, 0.1, 0.1, 0.1], threshold=0.27, direction="below",
        ...            rule=StopAfterPhase(margin=15))
        (20, 40)
    """
    crossed_at = None
    for s, v in zip(seen, values):
        if crossed_at is None and crossed(float(v), threshold, direction):
            crossed_at = int(s)
        if crossed_at is not None and s >= rule.stop_at(crossed_at):
            return crossed_at, int(s)
    return crossed_at, None
