"""Closed-loop interventions at run time: per-run trigger state, edits masked to the runs whose window is open.

Why this file exists: a triggered window (``Window(start=When(...))``, see
:mod:`clamp.interventions.when`) opens at a different step in each run of a
pack.  The applier edits every run of the run axis at once, so this module
extends it (:class:`TriggeredApplier`): at each forward it knows, per run,
whether each triggered window is open, and every edit of a triggered
intervention is restricted to the open runs with ``torch.where`` along the run
axis (``[R, ...]``), so a run whose trigger has not fired gets its activation
back bit for bit, with its gradient, and is not counted as fired.  An
intervention that is open for no run is not in the active set at all, so
before any trigger fires training is exactly the unintervened path.

Checking: at every evaluation the trainer hands the evaluation's metrics to
:meth:`TriggeredApplier.observe` (after they are computed, so the evaluation at
which an event is detected was itself taken before it acted), which updates
the state and returns one metric row per event, ``trigger/<name>/start`` and
``trigger/<name>/stop`` (``trigger/<name>/w<k>/...`` when an intervention has
several triggered windows): 0 until the event is detected, 1 from the
evaluation that detected it on.  Those rows, written to ``metrics.csv``, are
the record: :func:`restore_triggers` rebuilds the state from them on resume
(and when a pack is regrouped), so a resumed run acts exactly as an
uninterrupted one, and :func:`record_triggers` writes what fired when into
``run.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from clamp.errors import ConfigError
from clamp.names import trigger_prefix
from clamp.store import trigger_events
from clamp.interventions.apply import Applier
from clamp.interventions.spec import Intervention, Window
from clamp.interventions.when import When, is_triggered


@dataclass(frozen=True)
class TriggerSlot:
    """One triggered window of one intervention: where its state and metric rows live."""

    owner: int  # index of the intervention in the arm
    window: int  # index of the window in the intervention
    name: str  # the intervention's name
    spec: Window
    prefix: str  # "trigger/<name>" or "trigger/<name>/w<k>"

    def metric(self, end: str) -> str:
        return f"{self.prefix}/{end}"

    def events(self) -> list[tuple[str, When]]:
        """The (``start``/``stop``, When) events of this window."""
        return [(end, getattr(self.spec, end)) for end in ("start", "stop") if isinstance(getattr(self.spec, end), When)]


def trigger_slots(interventions: Sequence[Intervention]) -> list[TriggerSlot]:
    """Every triggered window of an arm, with its metric prefix.

    Example:
        >>> from clamp.interventions import match_clamp
        >>> iv = match_clamp(layer=1, head=0, windows=[Window(stop=When("train/loss", "<", 0.3))])
        >>> [s.metric("stop") for s in trigger_slots([iv])]
        ['trigger/induction_L1H0/stop']
    """
    out = []
    for i, iv in enumerate(interventions):
        triggered = [k for k, w in enumerate(iv.windows) if is_triggered(w)]
        for k in triggered:
            prefix = trigger_prefix(iv.name, None if len(triggered) == 1 else k)
            out.append(TriggerSlot(i, k, iv.name, iv.windows[k], prefix))
    return out


def trigger_metric_names(interventions: Sequence[Intervention]) -> list[str]:
    """The ``trigger/...`` metric names an arm records."""
    return [s.metric(end) for s in trigger_slots(interventions) for end, _ in s.events()]


def opens_at(w: Window, detected: int | None) -> int | None:
    """Sequences seen at which window ``w`` opens for a run whose start event was detected at ``detected``."""
    if isinstance(w.start, When):
        return None if detected is None else detected + w.start.delay
    return int(w.start)


def is_open(w: Window, start: int | None, stop: int | None, seen: int) -> bool:
    """Whether ``w`` is open at ``seen`` for a run with detected start/stop events ``start``/``stop`` (or None).

    Example:
        >>> w = Window(start=When("train/loss", "<", 0.5, delay=10, duration=100))
        >>> [is_open(w, 40, None, s) for s in (40, 49, 50, 149, 150)]
        [False, False, True, True, False]
    """
    o = opens_at(w, start)
    if o is None or seen < o:
        return False
    if isinstance(w.start, When) and w.start.duration is not None and seen >= o + w.start.duration:
        return False
    if isinstance(w.stop, When):
        return stop is None or seen < stop + w.stop.delay
    return w.stop is None or seen < w.stop


class TriggeredApplier(Applier):
    """The applier for an arm with triggered windows: per-run windows, edits masked along the run axis.

    Args: as :class:`~clamp.interventions.apply.Applier`.
    """

    def __init__(self, model: Any, interventions: Sequence[Intervention], task: Any, backend: str = "nnsight") -> None:
        super().__init__(model, interventions, task, backend)
        R = model.n_runs
        self.slots = trigger_slots(self.interventions)
        self.detected: dict[tuple[int, int, str], list[int | None]] = {
            (s.owner, s.window, end): [None] * R for s in self.slots for end, _ in s.events()}
        self._masks: dict[int, Tensor | None] = {}
        owners = {s.owner for s in self.slots}
        for i in owners:
            for op in self.effects[i].ops:
                if op.traced:
                    raise ConfigError(f"{self.interventions[i].name}: a triggered window cannot restrict a user's nnsight "
                                      "function to some runs of the pack; give it fixed windows, or write the edit "
                                      "as a Clamp/FunctionClamp.")
                if op.edits:
                    op.fn = self._masked(i, op.fn)

    # ----------------------------------------------------------------- per-run windows

    def run_open(self, i: int, seen: int) -> list[bool]:
        """Per run, whether intervention ``i`` is active at ``seen``."""
        iv = self.interventions[i]
        R = self.model.n_runs
        out = [False] * R
        for k, w in enumerate(iv.windows):
            if not is_triggered(w):
                if w.contains(seen):
                    return [True] * R
                continue
            start = self.detected.get((i, k, "start"), [None] * R)
            stop = self.detected.get((i, k, "stop"), [None] * R)
            for r in range(R):
                out[r] = out[r] or is_open(w, start[r] if isinstance(w.start, When) else None,
                                           stop[r] if isinstance(w.stop, When) else None, seen)
        return out

    def active(self, seen: int) -> tuple[int, ...]:
        act = []
        for i, iv in enumerate(self.interventions):
            if not any(is_triggered(w) for w in iv.windows):
                if iv.active(seen):
                    act.append(i)
                continue
            runs = self.run_open(i, seen)
            if any(runs):
                act.append(i)
                self._masks[i] = None if all(runs) else torch.tensor(runs, dtype=torch.bool)
        return tuple(act)

    def _masked(self, i: int, fn: Callable[[Tensor, Any], Tensor]) -> Callable[[Tensor, Any], Tensor]:
        def edit(y: Tensor, ctx: Any) -> Tensor:
            new = fn(y, ctx)
            mask = self._masks.get(i)
            if mask is None or new is y or not isinstance(new, Tensor) or new.shape != y.shape:
                return new
            m = mask.to(y.device).view(-1, *([1] * (y.dim() - 1)))  # [R, 1, ...]
            return torch.where(m, new, y)
        return edit

    # ----------------------------------------------------------------- events

    def observe(self, seen: int, metrics: dict[str, Tensor]) -> dict[str, Tensor]:
        """Check every trigger on this evaluation's metrics (per run); return the ``trigger/...`` rows."""
        R = self.model.n_runs
        for s in self.slots:
            w = s.spec
            for end, when in s.events():
                values = metrics.get(when.metric)
                if values is None:
                    continue
                state = self.detected[(s.owner, s.window, end)]
                start = self.detected.get((s.owner, s.window, "start"))
                for r in range(R):
                    if state[r] is not None or not when.holds(float(values[r])):
                        continue
                    if end == "stop":  # only once the window has been open for the steps before this evaluation
                        o = opens_at(w, start[r] if start is not None else None)
                        if o is None or o >= seen or not is_open(w, start[r] if start is not None else None, None, seen - 1):
                            continue
                    state[r] = seen
        out = {}
        for s in self.slots:
            for end, _ in s.events():
                state = self.detected[(s.owner, s.window, end)]
                out[s.metric(end)] = torch.tensor([0.0 if v is None or v > seen else 1.0 for v in state])
        return out

    def restore(self, events: Sequence[dict[str, int]]) -> None:
        """Set the state from each run's detected events (``{"trigger/.../start": seen}``), in run-axis order."""
        if len(events) != self.model.n_runs:
            raise ValueError(f"restore got {len(events)} runs' events for {self.model.n_runs} runs")
        for s in self.slots:
            for end, _ in s.events():
                self.detected[(s.owner, s.window, end)] = [ev.get(s.metric(end)) for ev in events]


def applier_class(interventions: Sequence[Intervention]) -> type[Applier]:
    """:class:`TriggeredApplier` when any window is triggered, else the plain applier."""
    return TriggeredApplier if any(is_triggered(w) for iv in interventions for w in iv.windows) else Applier


# --------------------------------------------------------------------------- records (metrics.csv, run.json)


def describe_events(interventions: Sequence[Intervention], events: dict[str, int]) -> dict[str, dict]:
    """``run.json``'s ``triggers`` entry: per event, the condition, when it was detected and when it acted."""
    out = {}
    for s in trigger_slots(interventions):
        for end, when in s.events():
            t = events.get(s.metric(end))
            out[s.metric(end)] = {"intervention": s.name, "event": end, "condition": when.describe(),
                                  "detected_at": t, "acts_at": None if t is None else t + when.delay}
    return out


def _interventions_of(trainer: Any) -> list[Intervention] | None:
    app = getattr(trainer, "intervener", None)
    return app.interventions if isinstance(app, TriggeredApplier) else None


def restore_triggers(trainer: Any, runs: Sequence[Any], up_to: int) -> None:
    """After loading a checkpoint at ``up_to``: rebuild every run's trigger state and run.json record from metrics.csv.

    ``runs`` are the pack's runs in run-axis order (each with ``.metrics`` and ``.record``).
    """
    ivs = _interventions_of(trainer)
    if ivs is None:
        return
    events = [trigger_events(r.metrics, up_to) for r in runs]
    trainer.intervener.restore(events)
    for r, ev in zip(runs, events):
        r.record["triggers"] = describe_events(ivs, ev)


def record_triggers(trainer: Any, run: Any, metrics: dict[str, Tensor], seen: int) -> bool:
    """Note in ``run.record["triggers"]`` the events first read at this evaluation; True if anything changed."""
    ivs = _interventions_of(trainer)
    if ivs is None:
        return False
    rec = run.record.setdefault("triggers", describe_events(ivs, {}))
    changed = False
    for name, entry in rec.items():
        v = metrics.get(name)
        if entry["detected_at"] is None and v is not None and float(v[run.index]) >= 0.5:
            entry["detected_at"] = seen
            delay = next(w.delay for s in trigger_slots(ivs) for end, w in s.events() if s.metric(end) == name)
            entry["acts_at"] = seen + delay
            changed = True
    return changed


__all__ = ["TriggeredApplier", "TriggerSlot", "trigger_slots", "trigger_metric_names", "is_open", "opens_at",
           "applier_class", "describe_events", "restore_triggers", "record_triggers"]
