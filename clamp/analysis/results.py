"""Reading a results folder back as pandas DataFrames: the notebook API.

Why this file exists: researchers review results in notebooks, and want the
numbers as DataFrames without parsing files by hand.  Every ``metrics.csv`` is
parsed by the one reader, :func:`clamp.store.read_metric_rows` (the worker,
resume and the statistics use it too); :func:`read_metrics` turns a folder of
them into one tidy frame, so the report, the statistics and a notebook see the
same rows.  Nothing here trains or writes: it only reads what ``clamp run`` /
``clamp report`` / ``clamp stats`` wrote.

Example (in a notebook)::

    import clamp
    res = clamp.open_results("results/quickstart")
    res.phase_times.query("estimator == 'threshold'")[["arm", "seed", "time", "event"]]
    res.metrics.query("metric == 'train/loss'").pivot_table(index="sequences_seen", columns=["arm", "seed"], values="value")
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from clamp.errors import ConfigError
from clamp.store import read_metric_rows

METRICS_COLUMNS = ("arm", "seed", "sequences_seen", "metric", "value")
_SEED_DIR = re.compile(r"seed(-?\d+)")


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
        runs = [(int(m.group(1)), p) for p in arm_dir.iterdir() if (m := _SEED_DIR.fullmatch(p.name))]
        for seed, folder in sorted(runs):
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


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


class Results:
    """A results folder, read lazily: each attribute is loaded on first use, then kept.

    Attributes:
        path: the folder.
        study: the ``study.json`` record (a dict: arms, seeds, phase rule, provenance).
        arms: the arm names, in the study's order.
        metrics: tidy metrics of every run (:func:`read_metrics`).
        runs: one row per run found on disk (``run.json``): arm, seed, status, hash, wall_seconds, error.
        summary: ``summary.csv`` (one row per run; computed when the file is absent).
        phase_times: ``phase_times.csv`` (one row per run × rule × estimator); empty if statistics never ran.
        comparisons: ``stats.csv`` (one row per comparison × rule × estimator); empty if none.
        factorial: ``factorial.csv`` (main effects and interactions); empty for a non-factorial study.
        stats_text: ``stats.md`` (the plain-language sentences), "" if absent.

    Example:
        >>> # res = open_results("results/quickstart"); res.comparisons[["arm", "reference", "ratio", "p"]]
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "study.json").is_file():
            raise ConfigError(f"{self.path}: no study.json here; give a folder written by `clamp run` "
                              f"(results/<study>), e.g. clamp.open_results('results/quickstart').")

    def __repr__(self) -> str:
        return f"Results({str(self.path)!r}: arms {self.arms}, seeds {self.study.get('seeds')})"

    @cached_property
    def study(self) -> dict:
        try:
            return json.loads((self.path / "study.json").read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{self.path / 'study.json'} is not valid JSON ({e}); rerun `clamp run` to rewrite it.") from e

    @property
    def arms(self) -> list[str]:
        return [a["name"] for a in self.study.get("arms", [])]

    @cached_property
    def metrics(self) -> pd.DataFrame:
        return read_metrics(self.path)

    @cached_property
    def runs(self) -> pd.DataFrame:
        rows = []
        for arm in self.arms:
            folder = self.path / "runs" / arm
            found = sorted(int(m.group(1)) for p in folder.glob("seed*") if (m := _SEED_DIR.fullmatch(p.name))) \
                if folder.is_dir() else []
            for seed in found:
                path = folder / f"seed{seed}" / "run.json"
                try:
                    rec = json.loads(path.read_text()) if path.is_file() else {}
                except json.JSONDecodeError:
                    rec = {"status": "unknown", "error": f"{path} is not valid JSON"}
                error = rec.get("error") or ""
                rows.append({"arm": arm, "seed": seed, "status": rec.get("status", "unknown"), "hash": rec.get("hash"),
                             "wall_seconds": (rec.get("timings") or {}).get("wall_seconds"),
                             "diverged_at": rec.get("diverged_at"), "error": error.splitlines()[0] if error else "",
                             "init_seed": (rec.get("seeds") or {}).get("init"),
                             "data_seed": (rec.get("seeds") or {}).get("data"),
                             "eval_seed": (rec.get("seeds") or {}).get("eval")})
        cols = ["arm", "seed", "status", "hash", "wall_seconds", "diverged_at", "error", "init_seed", "data_seed", "eval_seed"]
        return pd.DataFrame(rows, columns=cols)

    @cached_property
    def summary(self) -> pd.DataFrame:
        path = self.path / "summary.csv"
        if path.is_file():
            return _csv(path)
        from clamp.analysis.report import summary_frame  # not written yet (e.g. --no-report): compute it

        return summary_frame(self.path)

    @cached_property
    def phase_times(self) -> pd.DataFrame:
        return _csv(self.path / "phase_times.csv")

    @cached_property
    def comparisons(self) -> pd.DataFrame:
        return _csv(self.path / "stats.csv")

    @cached_property
    def factorial(self) -> pd.DataFrame:
        return _csv(self.path / "factorial.csv")

    @cached_property
    def stats_text(self) -> str:
        path = self.path / "stats.md"
        return path.read_text() if path.is_file() else ""


def open_results(path: str | Path) -> Results:
    """Open a results folder for reading in a notebook; attributes are pandas DataFrames.

    Args:
        path: a folder written by ``clamp run`` (``results/<study>``).

    Returns:
        A :class:`Results` (``metrics``, ``runs``, ``summary``, ``phase_times``,
        ``comparisons``, ``factorial``, ``study``, ``stats_text``).

    Raises:
        ConfigError: when the folder has no ``study.json``.

    Example:
        >>> # res = open_results("results/quickstart")
        >>> # res.phase_times.query("estimator == 'threshold'").groupby("arm")["time"].median()
    """
    return Results(path)
