"""Phase times measured from a per-run reference event instead of from initialisation.

Why this file exists: with closed-loop interventions (``clamp.When``) every run
is perturbed at its own moment, and the question becomes "how long from the
event to the phase change" (e.g. sequences from previous-token-head formation,
or from releasing a clamp, to the loss falling below 0.4 ln 2).  A rule with
``PhaseRule(relative_to=...)`` is timed here, per run, from:

- ``"<intervention>:start"`` / ``"<intervention>:stop"`` -- the evaluation at
  which that run's trigger was detected (the first ``trigger/<name>/<end>`` row
  reading 1 in its ``metrics.csv``; ``"<intervention>/w1:start"`` for the second
  triggered window of an intervention), or
- ``"METRIC>THRESHOLD"`` / ``"METRIC<THRESHOLD"`` -- the first evaluation at which
  another metric crosses (e.g. ``"prev_token/L0H1>0.5"``), for arms without triggers.

Per run and estimator: a phase change at ``t`` (or censoring at the last
evaluation ``t``) becomes ``t - t_ref``, with the same event flag.  Runs whose
reference never happened, and runs whose phase change came *before* it, are
kept in the table, excluded from the comparisons, and say so in ``note`` and
``reference`` (never silently dropped); the comparison rows count them in
``n_excluded``.  Pure functions on numbers, tested on hand-built curves.

Example:
    >>> ref = reference_rule("ko:start")
    >>> ref.metric, reference_time([0, 10, 20], [0, 0, 1], ref)
    ('trigger/ko/start', 20.0)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from clamp.phase import reference_rule, reference_time


def relative_row(row: dict, t_ref: float, relative_to: str) -> dict:
    """One phase_times row (``time``, ``event``, ``included``, ``note``) re-timed from ``t_ref``.

    Example:
        >>> r = relative_row({"time": 50.0, "event": True, "included": True, "note": ""}, 20.0, "ko:start")
        >>> r["time"], r["event"], r["included"], r["reference_time"]
        (30.0, True, True, 20.0)
        >>> relative_row({"time": 50.0, "event": False, "included": True, "note": ""}, math.nan, "ko:start")["reference"]
        'never happened'
    """
    out = dict(row)
    out["reference_time"] = t_ref
    if "first_crossing" in row:  # on the same clock as the time
        out["first_crossing"] = float(row["first_crossing"]) - t_ref if math.isfinite(t_ref) else math.nan
    t = float(row.get("time", math.nan))
    if not math.isfinite(t_ref):
        out.update(time=math.nan, included=False, reference="never happened",
                   note=_join(f"excluded: {relative_to} never happened in this run", row.get("note")))
        return out
    if not math.isfinite(t):
        out["reference"] = "happened"
        return out
    if bool(row.get("event")) and t < t_ref:
        out.update(time=t - t_ref, included=False, reference="phase change before it",
                   note=_join(f"excluded: phase change at {t:.6g}, before {relative_to} at {t_ref:.6g}", row.get("note")))
        return out
    out.update(time=t - t_ref, reference="happened")
    return out


def _join(a: str, b: Any) -> str:
    return "; ".join(s for s in (a, b if isinstance(b, str) else "") if s)


def retime(rows: Sequence[dict], curve: Any, rule: Any) -> list[dict]:
    """Rows of one run and rule re-timed from ``rule.relative_to`` (``curve``: that run's metrics DataFrame)."""
    ref = reference_rule(rule.relative_to)
    sel = None if curve is None else curve[curve["metric"] == ref.metric]
    if sel is None or sel.empty:
        t_ref = math.nan
    else:
        t_ref = reference_time(sel["sequences_seen"].to_numpy(float), sel["value"].to_numpy(float), ref)
    return [relative_row(r, t_ref, rule.relative_to) for r in rows]


def reference_metrics(rules: Sequence[Any]) -> set[str]:
    """The metrics the rules' references read (to load them with the rules' own metrics)."""
    return {reference_rule(r.relative_to).metric for r in rules if getattr(r, "relative_to", None)}


__all__ = ["relative_row", "retime", "reference_metrics"]
