"""The phase rule: when a run has had its phase change, and when a run may stop after it.

Why this file exists: the decision "this run has had its phase change" is a contract
between stages.  The study declares it (``clamp.Study(phase=[clamp.PhaseRule(...)])``),
the worker that stops runs after their transition (:class:`StopAfterPhase`) acts on it
while training, the statistics time every run with it from stored metrics, and the
report's tables and the notebook API read the same times.  Two implementations of it
would drift apart, and the drift would be a wrong number, so there is exactly one:
:func:`crossing_time`, with :func:`stop_point` built on it.  This module is a leaf
(numpy only, no torch, no other stage), so every stage can import it.

The rule, in order:

1. Evaluations whose metric is not finite are dropped; with
   ``outside_windows=True`` so are evaluations inside any of the arm's
   intervention windows (``start <= x < stop``), so a windowed clamp's own
   effect on the metric cannot be timed as the arm's phase change.
2. A crossing is an evaluation strictly past ``threshold`` (below it for
   ``direction="below"``, above it for ``"above"``).
3. Persistence: a crossing at x counts only if every evaluation in
   ``[x, x + persist]`` is past the threshold (``persist`` in sequences seen;
   a run that ends sooner must stay past to its end), or, with
   ``persist="end"``, every evaluation from x to the end of the run.
4. A crossing lasts: if the metric is not past the threshold at the run's last
   (considered) evaluation, the run did not keep its phase change.  It is then
   *relapsed*: right-censored at its last evaluation like a run that never
   crossed, and reported as such, with its first crossing kept for the reader.
5. ``relative_to``: the time is then measured from a per-run reference event
   (:func:`reference_rule` parses it; :mod:`clamp.analysis.stats.relative` retimes).

With ``persist=0`` (the default) a run that crosses and keeps its phase change
is timed exactly as Singh et al.'s rule (first evaluation below 0.4·ln 2).

Stopping: a run of a study with ``stop_after_phase`` stops at the first evaluation
at or past ``stop.stop_at(first)``, where ``first`` is :func:`crossing_time`'s first
crossing of the curve seen so far (:func:`stop_point`).  Until that decision honours
persistence, windows and reference events, a study whose primary rule uses them is
refused with stopping (:func:`check_stoppable`).

Example:
    >>> rule = PhaseRule()
    >>> crossing_time([0, 10, 20, 30], [0.7, 0.2, 0.7, 0.7], rule)
    Crossing(time=30.0, event=False, first=10.0, relapsed=True, note='relapsed: crossed at 10, not past the threshold at the last evaluation (30)')
"""


from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Iterable, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from clamp.errors import ConfigError
from clamp.fields import check_fields
from clamp.names import TRIGGER_PREFIX

LN2 = math.log(2.0)  # chance loss from context on the few-shot task (two labels in context)
THRESHOLD = 0.4 * LN2  # Singh et al.'s learning-time threshold on the training loss

Direction = Literal["below", "above"]
Span = tuple[float, float]  # [start, stop) in sequences seen; stop inf = to the end


@dataclass(frozen=True, kw_only=True)
class PhaseRule:
    """When a run has learned: the first lasting evaluation at which ``metric`` crosses ``threshold``.

    The default is Singh et al.'s learning time: training loss below 0.4 ln 2.

    Args:
        metric: metric name in the metrics CSV (e.g. ``train/loss``, ``loss/second_repeat``, ``induction/L1H0``).
        threshold: the level to cross.
        direction: ``"below"`` (a loss falls below) or ``"above"`` (a score rises above).
        persist: sequences the metric must stay past the threshold after a crossing for it to count
            (0: one evaluation), or ``"end"``: to the end of the run.
        outside_windows: time the phase change only from evaluations outside the arm's intervention windows.

    Example:
        >>> PhaseRule().metric, round(PhaseRule().threshold, 4), PhaseRule().direction
        ('train/loss', 0.2773, 'below')
        >>> PhaseRule.parse("induction/L1H0>0.5").describe()
        'induction/L1H0 > 0.5'
        >>> PhaseRule(persist=2000, outside_windows=True).describe()
        'train/loss < 0.277, lasting 2000 sequences, outside intervention windows'
    """

    metric: str = "train/loss"
    threshold: float = THRESHOLD
    direction: Direction = "below"
    persist: int | Literal["end"] = 0
    outside_windows: bool = False
    relative_to: str | None = None  # time from a per-run event: see reference_rule

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise ConfigError("PhaseRule.metric must be a non-empty metric name such as 'train/loss'.")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold):
            raise ConfigError(f"PhaseRule.threshold={self.threshold!r} must be a finite number, e.g. 0.277.")
        if self.direction not in ("below", "above"):
            raise ConfigError(f"PhaseRule.direction={self.direction!r} is unknown; choose 'below' or 'above'.")
        if self.persist != "end" and (isinstance(self.persist, bool) or not isinstance(self.persist, int)
                                      or self.persist < 0):
            raise ConfigError(f"PhaseRule.persist={self.persist!r} must be a number of sequences >= 0 "
                              "(0: one evaluation) or 'end' (past the threshold to the end of the run).")
        if not isinstance(self.outside_windows, bool):
            raise ConfigError(f"PhaseRule.outside_windows={self.outside_windows!r} must be True or False.")
        object.__setattr__(self, "threshold", float(self.threshold))
        if self.relative_to is not None:
            reference_rule(self.relative_to)  # a ConfigError naming the two accepted forms

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
        """Short text such as ``train/loss < 0.277, lasting to the end``."""
        out = f"{self.metric} {'<' if self.direction == 'below' else '>'} {self.threshold:.3g}"
        if self.persist == "end":
            out += ", lasting to the end of the run"
        elif self.persist:
            out += f", lasting {self.persist} sequences"
        if self.outside_windows:
            out += ", outside intervention windows"
        if self.relative_to:
            out += f", timed from {self.relative_to}"
        return out

    def slug(self) -> str:
        """A file-name-safe name, e.g. ``train-loss_lt_0.277`` (used for ``stats_<slug>/`` and plot suffixes).

        Example:
            >>> PhaseRule.parse("loss/second_repeat<1").slug(), PhaseRule(persist="end").slug()
            ('loss-second_repeat_lt_1', 'train-loss_lt_0.277_end')
        """
        s = f"{re.sub(r'[^A-Za-z0-9_]+', '-', self.metric).strip('-')}_{'lt' if self.direction == 'below' else 'gt'}_" \
            f"{self.threshold:.3g}"
        if self.persist:
            s += f"_{self.persist}" if self.persist == "end" else f"_p{self.persist}"
        s += "_outside" if self.outside_windows else ""
        return s + (f"_from-{re.sub(r'[^A-Za-z0-9_.]+', '-', self.relative_to).strip('-')}" if self.relative_to else "")

    def to_dict(self) -> dict:
        """JSON form; ``persist`` and ``outside_windows`` only when set (older study.json files stay identical)."""
        d: dict[str, Any] = {"metric": self.metric, "threshold": self.threshold, "direction": self.direction}
        if self.persist:
            d["persist"] = self.persist
        if self.outside_windows:
            d["outside_windows"] = True
        if self.relative_to:
            d["relative_to"] = self.relative_to
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PhaseRule":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict):
            raise ConfigError(f"A phase rule must be a dict with keys {sorted(known)}; got {d!r}.")
        if set(d) - known:
            raise ConfigError(f"Phase rule got unknown keys {sorted(set(d) - known)}; valid keys are {sorted(known)}.")
        return cls(**d)

    @classmethod
    def parse(cls, text: str, **kw: Any) -> "PhaseRule":
        """A rule from ``"METRIC<THRESHOLD"`` or ``"METRIC>THRESHOLD"`` (what ``clamp stats --phase`` takes).

        Example:
            >>> PhaseRule.parse("loss/second_repeat < 0.277", persist="end").to_dict()
            {'metric': 'loss/second_repeat', 'threshold': 0.277, 'direction': 'below', 'persist': 'end'}
        """
        m = re.fullmatch(r"\s*([^<>\s]+)\s*([<>])\s*([-+0-9.eE]+|[-+]?inf)\s*", str(text))
        if not m:
            raise ConfigError(f"phase rule {text!r} is not 'METRIC<THRESHOLD' or 'METRIC>THRESHOLD'; "
                              "e.g. --phase 'train/loss<0.277' or --phase 'induction/L1H0>0.5'.")
        try:
            threshold = float(m.group(3))
        except ValueError:
            raise ConfigError(f"phase rule {text!r}: {m.group(3)!r} is not a number.") from None
        return cls(metric=m.group(1), threshold=threshold, direction="below" if m.group(2) == "<" else "above", **kw)


@dataclass(frozen=True)
class Crossing:
    """What :func:`crossing_time` found on one curve.

    ``event`` True: the lasting phase change happened at ``time``.  ``event``
    False with finite ``time``: right-censored there (never crossed, or
    ``relapsed``).  ``first``: the first evaluation past the threshold,
    ignoring persistence and relapse (NaN if none).
    """

    time: float
    event: bool
    first: float
    relapsed: bool
    note: str


def clean_curve(x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sorted copy of a curve with non-finite values dropped and repeated x's kept last.

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


def outside(x: ArrayLike, y: ArrayLike, windows: Iterable[Span]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The evaluations of a curve outside every window ``[start, stop)``.

    Example:
        >>> outside([0, 10, 20, 30], [1, 2, 3, 4], [(0, 20)])
        (array([20., 30.]), array([3., 4.]))
    """
    xa, ya = clean_curve(x, y)
    keep = np.ones(xa.size, bool)
    for start, stop in windows:
        keep &= ~((xa >= start) & (xa < stop))
    return xa[keep], ya[keep]


def arm_windows(arm: dict) -> list[Span]:
    """The scheduled intervention windows of an arm record from ``study.json`` (``stop`` None = to the end).

    An intervention on for the whole run (one window from 0 with no stop, e.g.
    the knockout that leaves a single layer-2 head) is part of the arm's
    configuration, not a window to step outside of, so it is left out.

    Example:
        >>> arm_windows({"interventions": [{"windows": [{"start": 0, "stop": 5000}]}, {"windows": [{"start": 9, "stop": None}]},
        ...                                {"windows": [{"start": 0, "stop": None}]}]})
        [(0.0, 5000.0), (9.0, inf)]
    """
    out: list[Span] = []
    for iv in arm.get("interventions") or []:
        for w in (iv.get("windows") or []) if isinstance(iv, dict) else []:
            if isinstance(w.get("start"), dict) or isinstance(w.get("stop"), dict):
                continue  # a triggered window opens per run (clamp.When): not known from study.json
            start, stop = float(w.get("start") or 0), w.get("stop")
            if start <= 0 and stop is None:
                continue
            out.append((start, math.inf if stop is None else float(stop)))
    return out


def crossing_time(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, windows: Iterable[Span] = ()) -> Crossing:
    """The phase-change time of one curve under ``rule`` (the one first-crossing function of clamp).

    Args:
        x: sequences seen at each evaluation, shape ``[N]``.
        y: the rule's metric at each evaluation, shape ``[N]``.
        rule: threshold, direction, persistence and whether to skip intervention windows.
        windows: the arm's intervention windows; used only when ``rule.outside_windows``.

    Returns:
        A :class:`Crossing` (time NaN and event False when no evaluation is left).

    Example:
        >>> crossing_time([0, 10, 20, 30], [0.7, 0.6, 0.2, 0.1], PhaseRule()).time
        20.0
        >>> crossing_time([0, 10, 20, 30], [0.7, 0.2, 0.7, 0.1], PhaseRule(persist="end")).time
        30.0
        >>> crossing_time([0, 10, 20, 30], [0.1, 0.1, 0.7, 0.2], PhaseRule(outside_windows=True), windows=[(0, 20)]).time
        30.0
    """
    if rule.outside_windows:
        xa, ya = outside(x, y, windows)
    else:
        xa, ya = clean_curve(x, y)
    if xa.size == 0:
        note = "no evaluations outside the intervention windows" if rule.outside_windows and np.size(x) \
            else "no finite evaluations"
        return Crossing(math.nan, False, math.nan, False, note)
    past = np.asarray(rule.crossed(ya), bool).reshape(-1)
    hits = np.flatnonzero(past)
    last = float(xa[-1])
    if hits.size == 0:
        return Crossing(last, False, math.nan, False, "never crossed")
    first = float(xa[hits[0]])
    if not past[-1]:
        return Crossing(last, False, first, True, f"relapsed: crossed at {first:.6g}, not past the threshold at the "
                                                 f"last evaluation ({last:.6g})")
    # The last evaluation is past the threshold, so the final stretch of crossings always qualifies.
    fails = np.flatnonzero(~past)
    t = last
    for i in hits:
        later_fail = fails[fails > i]
        if later_fail.size == 0 or (rule.persist != "end" and xa[later_fail[0]] > xa[i] + rule.persist):
            t = float(xa[i])
            break
    note = "" if t == first else f"first crossing at {first:.6g} did not last ({rule.describe()})"
    return Crossing(t, True, first, False, note)


# --------------------------------------------------------------------------- reference events (relative_to)

_TRIGGER_REF = re.compile(r"([^\s:/]+(?:/w\d+)?):(start|stop)")


def reference_rule(relative_to: str) -> PhaseRule:
    """The rule whose first crossing is a ``relative_to`` reference event.

    ``"<intervention>:start"`` / ``"<intervention>:stop"`` (``"<intervention>/w1:start"`` for
    an intervention's second triggered window) read the run's trigger rows
    (:func:`clamp.names.trigger`); ``"METRIC>THRESHOLD"`` / ``"METRIC<THRESHOLD"`` the first
    crossing of another metric.

    Example:
        >>> reference_rule("prev_token/L0H1>0.5").describe(), reference_rule("ko:start").metric
        ('prev_token/L0H1 > 0.5', 'trigger/ko/start')
    """
    m = _TRIGGER_REF.fullmatch(str(relative_to).strip())
    if m:
        return PhaseRule(metric=f"{TRIGGER_PREFIX}{m.group(1)}/{m.group(2)}", threshold=0.5, direction="above")
    try:
        return PhaseRule.parse(relative_to)
    except ConfigError:
        raise ConfigError(f"PhaseRule.relative_to={relative_to!r} is neither '<intervention>:start' / "
                          "'<intervention>:stop' (a triggered window) nor 'METRIC>THRESHOLD' / 'METRIC<THRESHOLD' "
                          "(the first crossing of another metric), e.g. relative_to='ko:start'.") from None


def reference_time(x: ArrayLike, y: ArrayLike, ref: PhaseRule) -> float:
    """The first evaluation at which the reference curve is past its threshold; NaN if it never is.

    Example:
        >>> reference_time([0, 10, 20], [0.1, 0.6, 0.2], PhaseRule.parse("m>0.5")), reference_time([0], [0], PhaseRule.parse("m>0.5"))
        (10.0, nan)
    """
    return crossing_time(x, y, ref).first


# --------------------------------------------------------------------------- stopping after the phase change


@dataclass(frozen=True, kw_only=True)
class StopAfterPhase:
    """End each run ``margin + relative * t`` sequences after its phase change at ``t``.

    The phase change is the first crossing (:func:`crossing_time`'s ``first``) of the study's
    primary phase rule (``Study.phase[0]``, by default training loss below 0.4 ln 2); the run
    stops at the first evaluation at or past that point plus the margin (so the margin is at
    least one evaluation when it is positive).  See :func:`stop_point`.

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

    def stop_at(self, crossed: float) -> int:
        """Sequences seen from which a run that crossed at ``crossed`` stops (at its next evaluation)."""
        return int(crossed + self.margin + math.ceil(self.relative * crossed))

    def to_dict(self) -> dict:
        return {"margin": int(self.margin), "relative": float(self.relative)}


def stop_setting(stop: StopAfterPhase, rule: PhaseRule) -> dict:
    """The one plain-data form of "stop after the phase change": ``{"margin", "relative", "rule"}``.

    Run keys hash it, workers receive it (:func:`stop_from_setting` reads it back).

    Example:
        >>> stop_setting(StopAfterPhase(margin=10), PhaseRule())["rule"]["metric"]
        'train/loss'
    """
    return {**stop.to_dict(), "rule": rule.to_dict()}


def stop_from_setting(setting: dict) -> tuple[StopAfterPhase, PhaseRule]:
    """Inverse of :func:`stop_setting`."""
    return (StopAfterPhase(margin=int(setting["margin"]), relative=float(setting["relative"])),
            PhaseRule.from_dict(setting["rule"]))


def check_stoppable(rule: PhaseRule) -> None:
    """Refuse a primary rule whose crossing the stop decision cannot honour yet.

    :func:`stop_point` stops a run a margin after the rule's *first* crossing; with
    ``persist``, ``outside_windows`` or ``relative_to`` the rule's phase time is not that
    first crossing, so a stopped run could be timed differently from the same run trained
    to the end.  Refused before training rather than computed wrongly.

    Example:
        >>> check_stoppable(PhaseRule())
        >>> check_stoppable(PhaseRule(persist=1000))
        Traceback (most recent call last):
        ...
        clamp.errors.ConfigError: Study.stop_after_phase watches the primary phase rule 'train/loss < 0.277, lasting 1000 sequences', which sets persist=1000; stopping after the phase change honours only a plain threshold crossing so far. Fix: drop persist from the primary rule (keep it in a second rule: Study(phase=[PhaseRule(), PhaseRule(persist=...)])), or remove stop_after_phase.
    """
    used = [f"{k}={v!r}" for k, v in (("persist", rule.persist), ("outside_windows", rule.outside_windows),
                                      ("relative_to", rule.relative_to)) if v]
    if used:
        names = ", ".join(u.split("=")[0] for u in used)
        raise ConfigError(f"Study.stop_after_phase watches the primary phase rule {rule.describe()!r}, which sets "
                          f"{', '.join(used)}; stopping after the phase change honours only a plain threshold "
                          f"crossing so far. Fix: drop {names} from the primary rule (keep it in a second rule: "
                          f"Study(phase=[PhaseRule(), PhaseRule({names.split(', ')[0]}=...)])), or remove stop_after_phase.")


def stop_point(x: ArrayLike, y: ArrayLike, rule: PhaseRule, stop: StopAfterPhase) -> tuple[int | None, int | None]:
    """Where a curve first crosses ``rule`` and where a run following it stops: the worker's stop decision.

    The crossing is :func:`crossing_time`'s ``first`` (the statistics' own function);
    the stop is the first evaluation at or after ``stop.stop_at(first)``.  The worker calls
    this on each run's curve so far at every evaluation, and on the stored curve when it
    resumes a run.

    Args:
        x: evaluation points (sequences seen).
        y: the primary rule's metric at those points.
        rule: the primary phase rule (refused by :func:`check_stoppable` if it needs more than a crossing).
        stop: the stopping setting.

    Returns:
        ``(crossed_at, stop_at)``: the first evaluation past the threshold and the first evaluation
        at or after ``stop.stop_at(crossed_at)``; either is None when not reached.

    Example:
        >>> stop_point([0, 10, 20, 30, 40], [0.7, 0.7, 0.1, 0.1, 0.1], PhaseRule(), StopAfterPhase(margin=15))
        (20, 40)
    """
    xa, _ = clean_curve(x, y)
    first = crossing_time(x, y, rule).first
    if not math.isfinite(first):
        return None, None
    later = xa[xa >= stop.stop_at(first)]
    return int(first), (int(later[0]) if later.size else None)


__all__ = ["LN2", "THRESHOLD", "Crossing", "Direction", "PhaseRule", "Span", "StopAfterPhase", "arm_windows",
           "check_stoppable", "clean_curve", "crossing_time", "outside", "reference_rule", "reference_time",
           "stop_from_setting", "stop_point", "stop_setting"]
