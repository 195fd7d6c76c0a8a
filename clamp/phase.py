"""The phase rule: when a run has had its phase change, and when a run may stop after it.

Why this file exists: the decision "this run has had its phase change" is a contract
between stages.  The study declares it (``clamp.Study(phase=[clamp.PhaseRule(...)])``),
the worker that stops runs after their transition (:class:`StopAfterPhase`) acts on it
while training, the statistics time every run with it from stored metrics, and the
report's tables and the notebook API read the same times.  Two implementations of it
would drift apart, and the drift would be a wrong number, so there is exactly one:
:func:`crossing_time`, with :func:`stop_point` built on it.  This module is a leaf
(numpy only, no torch, no other stage), so every stage can import it.

The rule, in order (:func:`crossing_time`):

1. Evaluations whose metric is not finite are dropped; with ``outside_windows=True`` so are
   evaluations inside any of the run's intervention windows (``start <= x < stop``: fixed
   windows from the study, and triggered ``clamp.When`` windows as that run's trigger rows
   record them, :func:`run_windows`), so a clamp's own effect on the metric is never timed as
   the run's phase change.  An intervention on for the whole run is part of the arm's
   configuration, not a window.
2. A crossing is an evaluation strictly past ``threshold`` (below it for ``direction="below"``,
   above it for ``"above"``).
3. **The phase time is decidable a fixed span after it**: it is the first evaluation t past the
   threshold such that every evaluation from t up to and including the first one at or after
   ``t + W`` is past it too (so the run must have been evaluated at or beyond ``t + W``; with
   ``outside_windows`` only evaluations outside the windows count, so a window cannot stand in
   for the span); ``W`` is the rule's persistence span ``persist`` (in
   sequences seen; a study resolves the default to three evaluations, :data:`DEFAULT_SPAN_EVALS`).
   A run with no such t is censored at its last evaluation minus W.  Three things follow, and the
   stop decision and the statistics rely on them: a relapse after ``t + W`` does not undo a phase
   change (the run is flagged ``relapsed``, nothing more); a run stopped after its phase time is
   decided, a margin ``>= W`` after it, has exactly the phase time it would have had trained on;
   whether a run crossed by ``h`` depends only on its evaluations up to the first at or after
   ``h + W``.
4. ``persist="end"`` (the metric must stay past the threshold to the run's last evaluation) is
   kept as an explicit option; it is not decidable before a run ends, so it is refused with
   per-arm budgets and with stopping.
5. ``relative_to``: the time is then measured from a per-run reference event
   (:func:`reference_rule` parses it; :mod:`clamp.analysis.stats.relative` retimes).

With ``persist=0`` a run is timed exactly as Singh et al.'s rule (the first evaluation below
0.4·ln 2).

Stopping (:class:`StopAfterPhase`): a run stops at the first evaluation at or past
``t + margin + relative·t``, where ``t`` is the phase time above on the curve seen so far
(:func:`stop_point`); the margin must be at least W, so the stop never comes before the phase
time is decided.

Example:
    >>> rule = PhaseRule(persist=10)
    >>> crossing_time([0, 10, 20, 30, 40], [0.7, 0.2, 0.7, 0.2, 0.2], rule)
    Crossing(time=30.0, event=True, first=10.0, relapsed=False, note='first crossing at 10 did not last 10 sequences')
    >>> crossing_time([0, 10, 20, 30, 40], [0.7, 0.2, 0.2, 0.7, 0.7], rule)  # a relapse after t + W
    Crossing(time=10.0, event=True, first=10.0, relapsed=True, note='relapsed after its phase change (not past the threshold at the last evaluation, 40)')
"""


from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from clamp.errors import ConfigError
from clamp.fields import check_fields
from clamp.names import TRIGGER_PREFIX, trigger_prefix

LN2 = math.log(2.0)  # chance loss from context on the few-shot task (two labels in context)
THRESHOLD = 0.4 * LN2  # Singh et al.'s learning-time threshold on the training loss

DEFAULT_SPAN_EVALS = 3  # a study's default persistence span W: this many of its evaluation intervals (eval_every)

Direction = Literal["below", "above"]
Span = tuple[float, float]  # [start, stop) in sequences seen; stop inf = to the end


@dataclass(frozen=True, kw_only=True)
class PhaseRule:
    """When a run has learned: the first evaluation at which ``metric`` crosses ``threshold`` and stays past it.

    The default is Singh et al.'s learning time, training loss below 0.4 ln 2, confirmed over a
    short persistence span (see the module docstring).

    Args:
        metric: metric name in the metrics CSV (e.g. ``train/loss``, ``loss/second_repeat``, ``induction/L1H0``).
        threshold: the level to cross.
        direction: ``"below"`` (a loss falls below) or ``"above"`` (a score rises above).
        persist: the persistence span W, in sequences: the metric must stay past the threshold from a
            crossing to ``crossing + W`` for it to count (0: the crossing evaluation alone).  None (the
            default): a study resolves it to :data:`DEFAULT_SPAN_EVALS` evaluation intervals
            (:meth:`resolved`); a rule used alone treats None as 0.  ``"end"``: to the end of the run
            (not decidable before the run ends; refused with per-arm budgets and with stopping).
        outside_windows: time the phase change only from evaluations outside the arm's intervention windows.

    Example:
        >>> PhaseRule().metric, round(PhaseRule().threshold, 4), PhaseRule().direction
        ('train/loss', 0.2773, 'below')
        >>> PhaseRule.parse("induction/L1H0>0.5").describe()
        'induction/L1H0 > 0.5'
        >>> PhaseRule(persist=2000, outside_windows=True).describe()
        'train/loss < 0.277, lasting 2,000 sequences, outside intervention windows'
        >>> PhaseRule().resolved(eval_every=1000).persist
        3000
    """

    metric: str = "train/loss"
    threshold: float = THRESHOLD
    direction: Direction = "below"
    persist: int | Literal["end"] | None = None
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
        if self.persist not in (None, "end") and (isinstance(self.persist, bool) or not isinstance(self.persist, int)
                                                  or self.persist < 0):
            raise ConfigError(f"PhaseRule.persist={self.persist!r} must be a number of sequences >= 0 "
                              "(0: the crossing evaluation alone), None (three evaluation intervals) or 'end' "
                              "(past the threshold to the end of the run).")
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
    def span(self) -> int:
        """The persistence span W in sequences (0 for an unresolved rule; see :meth:`resolved`)."""
        return self.persist if isinstance(self.persist, int) else 0

    @property
    def decidable(self) -> bool:
        """Whether a run's phase time is decided a fixed span after it (every rule but ``persist="end"``)."""
        return self.persist != "end"

    def resolved(self, *, eval_every: int) -> "PhaseRule":
        """This rule with its default persistence span made explicit: :data:`DEFAULT_SPAN_EVALS` x ``eval_every``."""
        if self.persist is not None:
            return self
        return replace(self, persist=DEFAULT_SPAN_EVALS * int(eval_every))

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
            out += f", lasting {self.persist:,} sequences"
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
        """JSON form; ``persist`` when set (0 included), ``outside_windows`` and ``relative_to`` only when set."""
        d: dict[str, Any] = {"metric": self.metric, "threshold": self.threshold, "direction": self.direction}
        if self.persist is not None:
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


def has_triggered_windows(interventions: Iterable[dict]) -> bool:
    """Whether any intervention record has a window opened or closed by an event (``clamp.When``)."""
    return any(isinstance(w.get(end), dict) for iv in interventions if isinstance(iv, dict)
               for w in iv.get("windows") or [] for end in ("start", "stop"))


def run_windows(interventions: Iterable[dict], events: dict[str, float] | None = None) -> list[Span]:
    """The intervention windows of one run, from its arm's intervention records and its trigger events.

    Fixed windows come from the records (``study.json``'s arm, or a worker's job).  A triggered
    window (``start`` or ``stop`` a ``clamp.When``) is placed where the run's own events put it:
    ``events`` maps a trigger row's name (:func:`clamp.names.trigger`) to the evaluation that
    detected it; the window opens ``delay`` sequences later and closes ``duration`` after opening,
    at its stop event plus that event's delay, or at its fixed stop (the same arithmetic as
    :func:`clamp.interventions.triggers.is_open`).  A window whose start never fired is absent;
    with ``events`` None triggered windows are unknown and left out.  An intervention on for the
    whole run (one window from 0 with no stop) is part of the arm's configuration, not a window
    to step outside of, so it is left out too.

    Example:
        >>> ivs = [{"name": "a", "windows": [{"start": 0, "stop": 5000}]}, {"name": "b", "windows": [{"start": 9, "stop": None}]},
        ...        {"name": "ko", "windows": [{"start": 0, "stop": None}]},
        ...        {"name": "t", "windows": [{"start": {"when": "train/loss", "op": "<", "threshold": 0.6, "delay": 100,
        ...                                              "duration": 2000}, "stop": None}]}]
        >>> run_windows(ivs), run_windows(ivs, {"trigger/t/start": 900})
        ([(0.0, 5000.0), (9.0, inf)], [(0.0, 5000.0), (9.0, inf), (1000.0, 3000.0)])
    """
    out: list[Span] = []
    for iv in interventions:
        if not isinstance(iv, dict):
            continue
        windows = iv.get("windows") or []
        triggered = [k for k, w in enumerate(windows) if isinstance(w.get("start"), dict) or isinstance(w.get("stop"), dict)]
        for k, w in enumerate(windows):
            start, stop = w.get("start"), w.get("stop")
            if k not in triggered:
                if (start or 0) <= 0 and stop is None:
                    continue
                out.append((float(start or 0), math.inf if stop is None else float(stop)))
                continue
            if events is None:
                continue
            prefix = trigger_prefix(str(iv.get("name")), None if len(triggered) == 1 else k)
            if isinstance(start, dict):
                detected = events.get(f"{prefix}/start")
                if detected is None:
                    continue  # its event never happened in this run: the window never opened
                opens = float(detected) + float(start.get("delay") or 0)
            else:
                opens = float(start or 0)
            if isinstance(start, dict) and start.get("duration") is not None:
                closes = opens + float(start["duration"])
            elif isinstance(stop, dict):
                detected = events.get(f"{prefix}/stop")
                closes = math.inf if detected is None else float(detected) + float(stop.get("delay") or 0)
            else:
                closes = math.inf if stop is None else float(stop)
            out.append((opens, closes))
    return out


def arm_windows(arm: dict) -> list[Span]:
    """The fixed windows of an arm record from ``study.json`` (:func:`run_windows` without events)."""
    return run_windows(arm.get("interventions") or [])


def crossing_time(x: ArrayLike, y: ArrayLike, rule: PhaseRule, *, windows: Iterable[Span] = ()) -> Crossing:
    """The phase-change time of one curve under ``rule``: the one crossing function of clamp.

    The first evaluation past the threshold that stays past it for the rule's span W (and was
    followed for at least W); otherwise censored at the last evaluation minus W (see the module
    docstring).  With ``persist="end"`` the crossing must last to the last evaluation.

    Args:
        x: sequences seen at each evaluation, shape ``[N]``.
        y: the rule's metric at each evaluation, shape ``[N]``.
        rule: threshold, direction, persistence and whether to skip intervention windows.
        windows: the run's intervention windows (:func:`run_windows`); used only when ``rule.outside_windows``.

    Returns:
        A :class:`Crossing` (time NaN and event False when no evaluation is left).

    Example:
        >>> crossing_time([0, 10, 20, 30], [0.7, 0.6, 0.2, 0.1], PhaseRule()).time
        20.0
        >>> crossing_time([0, 10, 20, 30], [0.7, 0.2, 0.7, 0.1], PhaseRule(persist="end")).time
        30.0
        >>> crossing_time([0, 10, 20, 30], [0.1, 0.1, 0.7, 0.2], PhaseRule(outside_windows=True), windows=[(0, 20)]).time
        30.0
        >>> crossing_time([0, 10, 20, 30], [0.7, 0.7, 0.7, 0.2], PhaseRule(persist=20))  # not yet confirmed
        Crossing(time=10.0, event=False, first=30.0, relapsed=False, note='crossed at 30, not confirmed: the run ended before 30 + 20')
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
    if rule.persist == "end":
        return _crossing_to_the_end(xa, past, hits, last, rule)
    W = float(rule.span)
    censor_at = max(last - W, float(xa[0]))
    if hits.size == 0:
        return Crossing(censor_at, False, math.nan, False, "never crossed")
    first = float(xa[hits[0]])
    for i in hits:
        t = float(xa[i])
        end = int(np.searchsorted(xa, t + W, side="left"))  # the first evaluation at or after t + W
        if end >= xa.size:
            why = f"crossed at {t:.6g}, not confirmed: the run ended before {t:.6g} + {W:.6g}"
            return Crossing(censor_at, False, first, False, why if t == first else
                            f"first crossing at {first:.6g} did not last {W:.6g} sequences; {why}")
        if past[i:end + 1].all():
            relapsed = not bool(past[-1])
            notes = [] if t == first else [f"first crossing at {first:.6g} did not last {W:.6g} sequences"]
            if relapsed:
                notes.append(f"relapsed after its phase change (not past the threshold at the last evaluation, {last:.6g})")
            return Crossing(t, True, first, relapsed, "; ".join(notes))
    return Crossing(censor_at, False, first, True, f"crossed at {first:.6g} but never stayed past the threshold for "
                                                  f"{W:.6g} sequences")


def _crossing_to_the_end(xa: NDArray[np.float64], past: NDArray[np.bool_], hits: NDArray[np.intp], last: float,
                         rule: PhaseRule) -> Crossing:
    """``persist="end"``: the first crossing after which the metric stays past the threshold to the last evaluation."""
    if hits.size == 0:
        return Crossing(last, False, math.nan, False, "never crossed")
    first = float(xa[hits[0]])
    if not past[-1]:
        return Crossing(last, False, first, True, f"relapsed: crossed at {first:.6g}, not past the threshold at the "
                                                 f"last evaluation ({last:.6g})")
    fails = np.flatnonzero(~past)
    t = float(xa[fails[-1] + 1]) if fails.size else float(xa[0])
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

    The phase change is the study's primary phase rule's decidable time (:func:`crossing_time`:
    persistence, windows and triggered windows included); the run stops at the first evaluation
    at or past ``t + margin + relative * t``.  The margin must be at least the rule's persistence
    span W, so the phase time is always decided before the stop, and a stopped run has exactly
    the phase time it would have had trained to its budget.  See :func:`stop_point`.

    Args:
        margin: sequences to keep training after the phase change (>= the rule's span W).  Leave
            enough for the robustness estimators (sigmoid, steepest descent) to see the end of the drop.
        relative: plus this fraction of the phase time (>= 0); late phase changes have wider drops.

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
        """Sequences seen from which a run whose phase change was at ``crossed`` stops (at its next evaluation)."""
        return int(crossed + self.margin + math.ceil(self.relative * crossed))

    def to_dict(self) -> dict:
        return {"margin": int(self.margin), "relative": float(self.relative)}


#: The stop decision's version, hashed into run keys: version 2 stops a margin after the rule's
#: decidable phase time (persistence, windows, triggered windows); runs stopped by version 1 (a margin
#: after the first crossing, whatever the rule) are not reused.
STOP_DECISION = 2


def stop_setting(stop: StopAfterPhase, rule: PhaseRule) -> dict:
    """The one plain-data form of "stop after the phase change": ``{"margin", "relative", "rule", "decision"}``.

    Run keys hash it, workers receive it (:func:`stop_from_setting` reads it back).

    Example:
        >>> stop_setting(StopAfterPhase(margin=10), PhaseRule(persist=0))
        {'margin': 10, 'relative': 0.0, 'rule': {'metric': 'train/loss', 'threshold': 0.2772588722239781, 'direction': 'below', 'persist': 0}, 'decision': 2}
    """
    return {**stop.to_dict(), "rule": rule.to_dict(), "decision": STOP_DECISION}


def stop_from_setting(setting: dict) -> tuple[StopAfterPhase, PhaseRule]:
    """Inverse of :func:`stop_setting`."""
    return (StopAfterPhase(margin=int(setting["margin"]), relative=float(setting["relative"])),
            PhaseRule.from_dict(setting["rule"]))


def check_stoppable(rule: PhaseRule, stop: StopAfterPhase) -> None:
    """Refuse a stop setting whose runs could get another phase time than if trained to their budgets.

    ``persist="end"`` is not decided before a run ends, and a margin shorter than the rule's
    persistence span W would stop some runs before their phase time is decided.

    Example:
        >>> check_stoppable(PhaseRule(persist=1000), StopAfterPhase(margin=1000))
        >>> check_stoppable(PhaseRule(persist=1000), StopAfterPhase(margin=500))
        Traceback (most recent call last):
        ...
        clamp.errors.ConfigError: StopAfterPhase(margin=500) is shorter than the primary phase rule's persistence span (1000 sequences): a run would stop before its phase time is decided. Fix: give margin >= 1000, or a shorter persist on the rule.
    """
    if rule.persist == "end":
        raise ConfigError(f"Study.stop_after_phase watches the primary phase rule {rule.describe()!r}, which must "
                          "last to the end of the run, so no run can stop before its end. Fix: give the rule a "
                          "span (persist=N sequences, or leave it at its default), or remove stop_after_phase.")
    if stop.margin < rule.span:
        raise ConfigError(f"StopAfterPhase(margin={stop.margin}) is shorter than the primary phase rule's persistence "
                          f"span ({rule.span} sequences): a run would stop before its phase time is decided. Fix: give "
                          f"margin >= {rule.span}, or a shorter persist on the rule.")


def stop_point(x: ArrayLike, y: ArrayLike, rule: PhaseRule, stop: StopAfterPhase, *,
               windows: Iterable[Span] = ()) -> tuple[int | None, int | None]:
    """Where a run's phase change is and where the run stops: the worker's stop decision.

    The phase time is :func:`crossing_time`'s (the statistics' own function, with the run's
    windows for ``outside_windows``); the stop is the first evaluation at or after
    ``stop.stop_at(time)``.  The worker calls this on each run's curve so far at every
    evaluation, and on the stored curve when it resumes a run.

    Args:
        x: evaluation points (sequences seen).
        y: the primary rule's metric at those points.
        rule: the primary phase rule (its span resolved; see :func:`check_stoppable`).
        stop: the stopping setting.
        windows: the run's intervention windows so far (:func:`run_windows`).

    Returns:
        ``(phase_time, stop_at)``: the decided phase time and the first evaluation at or after
        ``stop.stop_at(phase_time)``; either is None when not reached.

    Example:
        >>> stop_point([0, 10, 20, 30, 40], [0.7, 0.7, 0.1, 0.1, 0.1], PhaseRule(persist=10), StopAfterPhase(margin=15))
        (20, 40)
    """
    c = crossing_time(x, y, rule, windows=windows)
    if not c.event:
        return None, None
    xa, _ = clean_curve(x, y)
    later = xa[xa >= stop.stop_at(c.time)]
    return int(c.time), (int(later[0]) if later.size else None)


__all__ = ["DEFAULT_SPAN_EVALS", "LN2", "STOP_DECISION", "THRESHOLD", "Crossing", "Direction", "PhaseRule", "Span",
           "StopAfterPhase", "arm_windows", "check_stoppable", "clean_curve", "crossing_time", "has_triggered_windows",
           "outside", "reference_rule", "reference_time", "run_windows", "stop_from_setting", "stop_point",
           "stop_setting"]
