"""A results folder's metrics as one tidy pandas frame: ``arm, seed, sequences_seen, metric, value``.

Why this file exists: the statistics, the report, the page and a notebook all want every run's
metrics as one DataFrame; each ``metrics.csv`` is parsed by the one reader
(:func:`clamp.store.read_metric_rows`) and the frames are put together here, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from clamp.names import TRIGGER_PREFIX
from clamp.store import read_metric_rows, run_seeds

METRICS_COLUMNS = ("arm", "seed", "sequences_seen", "metric", "value")


def _read_one(path: Path, arm: str, seed: int, wanted: set[str] | None) -> pd.DataFrame:
    rows = read_metric_rows(path, metrics=wanted)
    keep = slice(None)
    # A packed run's file holds its own rows only; should another run's rows be there, keep this seed's.
    if len(set(rows.run)) > 1:
        keep = pd.to_numeric(pd.Series(rows.run), errors="coerce").to_numpy() == seed
    return pd.DataFrame({"arm": arm, "seed": seed, "sequences_seen": rows.seen[keep],
                         "metric": np.asarray(rows.metric, dtype=object)[keep], "value": rows.value[keep]})


def read_run_metrics(path: str | Path, seed: int, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """One run's ``metrics.csv``: columns ``seed, sequences_seen, metric, value`` (``metrics``: keep only these)."""
    df = _read_one(Path(path), "", seed, set(metrics) if metrics is not None else None)
    return df.drop(columns=["arm"]).reset_index(drop=True)


def read_metrics(study_dir: str | Path, *, metrics: Iterable[str] | None = None,
                 arms: Iterable[str] | None = None) -> pd.DataFrame:
    """Every run's ``metrics.csv`` of a results folder, as one tidy frame.

    Args:
        study_dir: a folder written by ``clamp run`` (``results/<study>``).
        metrics: keep only these metric names (default: all).
        arms: read only these arms (default: every arm folder under ``runs/``).

    Returns:
        Columns ``arm, seed, sequences_seen, metric, value`` (seed from the run's
        folder name), rows in file order, arms and seeds sorted; an empty frame
        with these columns when no run has metrics yet.

    Raises:
        ConfigError: a ``metrics.csv`` without the expected columns.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> (d / "runs/a/seed0").mkdir(parents=True)
        >>> _ = (d / "runs/a/seed0/metrics.csv").write_text("sequences_seen,run,metric,value\\n0,0,train/loss,0.7\\n")
        >>> read_metrics(d).values.tolist()
        [['a', 0, 0, 'train/loss', 0.7]]
    """
    root = Path(study_dir) / "runs"
    wanted = set(metrics) if metrics is not None else None
    only = set(arms) if arms is not None else None
    frames = []
    for arm_dir in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        if only is not None and arm_dir.name not in only:
            continue
        for seed in run_seeds(root.parent, arm_dir.name):
            folder = arm_dir / f"seed{seed}"
            path = folder / "metrics.csv"
            if path.is_file():
                df = _read_one(path, arm_dir.name, seed, wanted)
                if len(df):
                    frames.append(df)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(METRICS_COLUMNS, ("object", "int64", "float64", "object", "float64"))})
    out = pd.concat(frames, ignore_index=True)
    if out["sequences_seen"].notna().all() and (out["sequences_seen"] % 1 == 0).all():
        out["sequences_seen"] = out["sequences_seen"].astype("int64")
    return out


def trigger_times(df: pd.DataFrame, arm: str) -> list[tuple[str, int, float]]:
    """``(trigger row, seed, sequences seen)`` of every trigger event of ``arm``'s runs (first row reading 1).

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


def run_events(df: pd.DataFrame, arm: str, seed: int) -> dict[str, float]:
    """One run's trigger events as :func:`clamp.phase.run_windows` takes them: ``{trigger row: sequences seen}``."""
    return {m: x for m, s, x in trigger_times(df, arm) if s == seed}


__all__ = ["METRICS_COLUMNS", "read_metrics", "read_run_metrics", "run_events", "trigger_times"]
