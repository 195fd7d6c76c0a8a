"""Vertical markers on the report's curves where each run's trigger fired (closed-loop windows).

Why this file exists: with a triggered window (``clamp.When``) every run is
perturbed at its own moment, so a curve cannot be read without knowing when.
Each run records ``trigger/<intervention>/<start|stop>`` rows (0, then 1 from
the evaluation that detected the event, see :mod:`clamp.interventions.triggers`);
:func:`trigger_times` reads the first 1 per run and :func:`mark_triggers` draws
one thin vertical line per run and event in the arm's colour (solid for a
start, dotted for a stop).  Pure reading of the long metrics table.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from clamp.names import TRIGGER_PREFIX


def trigger_times(df: pd.DataFrame, arm: str) -> list[tuple[str, int, float]]:
    """``(metric, seed, sequences seen)`` of every trigger event of ``arm``'s runs (first row reading 1).

    Example:
        >>> df = pd.DataFrame({"arm": "a", "seed": 0, "sequences_seen": [0, 10, 20],
        ...                    "metric": "trigger/ko/start", "value": [0.0, 1.0, 1.0]})
        >>> trigger_times(df, "a")
        [('trigger/ko/start', 0, 10.0)]
    """
    sel = df[(df["arm"] == arm) & df["metric"].astype(str).str.startswith(TRIGGER_PREFIX) & (df["value"] >= 0.5)]
    if sel.empty:
        return []
    first = sel.groupby(["metric", "seed"], sort=True)["sequences_seen"].min()
    return [(str(m), int(s), float(x)) for (m, s), x in first.items()]


def mark_triggers(ax: Any, df: pd.DataFrame, arms: Sequence[str], styles: dict[str, dict]) -> None:
    """Draw each run's trigger events of ``arms`` on ``ax`` (one legend entry per arm and event)."""
    for arm in arms:
        labelled: set[str] = set()
        for metric, _seed, x in trigger_times(df, arm):
            end = metric.rsplit("/", 1)[-1]
            label = None if metric in labelled else f"{arm}: {metric.removeprefix(TRIGGER_PREFIX)} fired"
            labelled.add(metric)
            ax.axvline(x, color=styles.get(arm, {}).get("color", "0.4"), lw=0.9, alpha=0.7,
                       ls="-" if end == "start" else ":", label=label, zorder=1)


__all__ = ["trigger_times", "mark_triggers"]
