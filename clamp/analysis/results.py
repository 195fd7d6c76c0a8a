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
from functools import cached_property
from pathlib import Path

import pandas as pd

from clamp.analysis.metrics import read_metrics
from clamp.analysis.summary import summary_frame
from clamp.errors import ConfigError
from clamp.store import run_seeds

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
            for seed in run_seeds(self.path, arm):
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
        return summary_frame(self.path)  # not written yet (e.g. --no-report): compute it

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
