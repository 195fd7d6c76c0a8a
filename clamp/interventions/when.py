"""Events that open or close an intervention window: a metric crossing a threshold, per run.

Why this file exists: a fixed window (``Window(start=64_000)``) hits every seed
at the same step, whatever stage that seed has reached.  A *closed-loop* window
opens (or closes) when the run's own metric crosses a threshold -- the
closed-loop experiments of optogenetics -- so the intervention lands at the
same developmental moment in every run.  This module is the data side only (no
torch): :class:`When` is a frozen keyword-only dataclass that round-trips
through JSON inside a :class:`~clamp.interventions.spec.Window`.  The runtime
(per-run state, masking the edit to the runs whose trigger fired, recording,
resume) is :mod:`clamp.interventions.triggers`.

Semantics (per run, checked at every evaluation, on the metrics that
evaluation recorded):

- ``Window(start=When(...))``: the first evaluation at ``seen = t`` at which the
  condition holds *detects* the event; the window opens at ``t + delay`` (the
  training step that starts after ``t + delay`` sequences is the first one
  edited) and, with ``duration``, closes at ``t + delay + duration``.
- ``Window(stop=When(...))``: checked only at evaluations at which the window is
  open; detected at ``t``, the window closes at ``t + delay``.  A stopped window
  never reopens.
- ``start``/``stop`` may still be numbers; both kinds mix (``Window(start=0,
  stop=When(...))`` is "from initialisation until the loss crosses").

Example:
    >>> w = When("train/loss", "<", 0.5, delay=1000)
    >>> w.describe()
    'train/loss < 0.5, then 1000 sequences'
    >>> When.from_dict(w.to_dict()) == w
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from clamp.errors import ConfigError

Comparison = Literal["<", ">", "<=", ">="]
OPS = ("<", ">", "<=", ">=")


@dataclass(frozen=True)
class When:
    """A per-run event: ``metric op threshold`` at an evaluation, acted on ``delay`` sequences later.

    Args:
        metric: a metric the arm records at every evaluation (``train/loss``, ``prev_token/L0H1``,
            ``induction/L1H0``, ``train_batch/loss``, a user metric...); validation lists them.
        op: ``"<"``, ``">"``, ``"<="`` or ``">="``.
        threshold: the level (finite).
        delay: sequences between detecting the event and acting on it (>= 0).
        duration: for a start event, how many sequences the window stays open after it opens
            (None: until the window's stop, or the end of training).  Not allowed on a stop event.
    """

    metric: str
    op: Comparison
    threshold: float
    delay: int = 0
    duration: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise ConfigError(f"When.metric={self.metric!r} must be a metric name such as 'train/loss'.")
        if self.op not in OPS:
            raise ConfigError(f"When.op={self.op!r} is unknown; choose one of {list(OPS)}.")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold):
            raise ConfigError(f"When.threshold={self.threshold!r} must be a finite number.")
        if isinstance(self.delay, bool) or not isinstance(self.delay, int) or self.delay < 0:
            raise ConfigError(f"When.delay={self.delay!r} must be a whole number of sequences >= 0.")
        if self.duration is not None and (isinstance(self.duration, bool) or not isinstance(self.duration, int)
                                          or self.duration < 1):
            raise ConfigError(f"When.duration={self.duration!r} must be a positive number of sequences, or None.")
        object.__setattr__(self, "threshold", float(self.threshold))

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the condition (NaN never does).

        Example:
            >>> When("train/loss", "<", 0.5).holds(0.4), When("train/loss", "<", 0.5).holds(float("nan"))
            (True, False)
        """
        v = float(value)
        if not math.isfinite(v):
            return False
        t = self.threshold
        return {"<": v < t, ">": v > t, "<=": v <= t, ">=": v >= t}[self.op]

    def describe(self) -> str:
        out = f"{self.metric} {self.op} {self.threshold:.4g}"
        if self.delay:
            out += f", then {self.delay} sequences"
        if self.duration is not None:
            out += f", for {self.duration} sequences"
        return out

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"when": self.metric, "op": self.op, "threshold": self.threshold}
        if self.delay:
            d["delay"] = self.delay
        if self.duration is not None:
            d["duration"] = self.duration
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "When":
        known = {"when", "op", "threshold", "delay", "duration"}
        if not isinstance(d, dict) or "when" not in d:
            raise ConfigError(f"a trigger must be a dict with keys {sorted(known)}; got {d!r}.")
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"trigger got unknown keys {sorted(unknown)}; valid keys are {sorted(known)}.")
        d = dict(d)
        return cls(d.pop("when"), **d)

    @classmethod
    def coerce(cls, v: Any) -> Any:
        """A When from a When or its dict; anything else is returned unchanged (a number, None)."""
        if isinstance(v, dict):
            return cls.from_dict(v)
        return v


def is_triggered(window: Any) -> bool:
    """Whether a window's start or stop is an event (:class:`When`) rather than a number."""
    return isinstance(getattr(window, "start", None), When) or isinstance(getattr(window, "stop", None), When)


__all__ = ["When", "is_triggered", "OPS"]
