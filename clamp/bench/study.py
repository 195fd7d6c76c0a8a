"""Wall time and memory of a whole study, for the benchmark (``clamp bench --study``).

Why this file exists: the flagship target is a whole study, not a step.  This
runs a study file at its defaults through the ordinary runner (worker
processes, checkpoints, metrics files, statistics and report included) and
records the workers' resident memory from their progress events, so that the
memory at 10 % and at 100 % of the study's training can be compared (it should
stay flat).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

from clamp.execution.pack import PackJob, peak_resident_mib
from clamp.store import read_json
from clamp.execution.executors.local import InlineExecutor, ProcessExecutor
from clamp.execution.runner import run_study
from clamp.study.load import load_study


class _Recorder:
    """Wraps an executor and keeps every progress event with its arrival time."""

    def __init__(self, inner: InlineExecutor | ProcessExecutor) -> None:
        self.inner = inner
        self.events: list[tuple[float, dict]] = []

    def run(self, jobs: Sequence[PackJob], on_event) -> Iterator:
        def record(ev: dict) -> None:
            self.events.append((time.time(), ev))
            on_event(ev)

        yield from self.inner.run(jobs, record)


def memory_at(events: list[tuple[float, dict]], runs_per_job: dict[int, int], n_sequences: int,
              fraction: float) -> float:
    """Largest worker resident memory (MiB) when the study's trained sequences first reach ``fraction``.

    Example:
        >>> ev = [(0, {"job": 0, "seen": 10, "n_runs": 1, "pid": 1, "rss_mib": 50.0}),
        ...       (1, {"job": 0, "seen": 100, "n_runs": 0, "pid": 1, "rss_mib": 60.0})]
        >>> memory_at(ev, {0: 1}, 100, 0.1), memory_at(ev, {0: 1}, 100, 1.0)
        (50.0, 60.0)
    """
    total = n_sequences * sum(runs_per_job.values())
    seen: dict[int, int] = {}
    rss: dict[int, float] = {}
    for _, ev in events:
        if "rss_mib" not in ev:
            continue
        seen[ev["job"]] = ev["seen"]
        rss[ev["pid"]] = ev["rss_mib"]
        done = sum(s * runs_per_job.get(j, 0) for j, s in seen.items())
        if done >= fraction * total:
            return max(rss.values())
    return max(rss.values()) if rss else float("nan")


def time_study(path: str, out: str | None = None, jobs: int | None = None) -> dict:
    """Run the study file at ``path`` at its defaults; wall time (s), memory (MiB) and statuses.

    Example:
        >>> # res = time_study("studies/singh2024_subcircuits.py")  # minutes
    """
    study = load_study(path)
    out_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="clamp-bench-"))
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(study.arms)))  # one pack per arm
    inner = InlineExecutor(1) if n_jobs == 1 else ProcessExecutor(n_jobs, 1)
    recorder = _Recorder(inner)
    start = time.time()
    code = run_study(study, out=out_dir, jobs=n_jobs, executor=recorder, quiet=False, study_file=path)
    wall = time.time() - start
    folder = out_dir / study.name
    runs = [read_json(p) or {} for p in sorted(folder.glob("runs/*/seed*/run.json"))]
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r.get("status", "?")] = statuses.get(r.get("status", "?"), 0) + 1
    per_job: dict[int, int] = {}
    for _, ev in recorder.events:
        per_job[ev["job"]] = max(per_job.get(ev["job"], 0), ev.get("n_runs", 0))
    per_job = {j: n or len(study.seeds) for j, n in per_job.items()}
    return {
        "wall_s": wall, "jobs": n_jobs, "runs": len(runs), "statuses": statuses, "exit_code": code,
        "rss_10": memory_at(recorder.events, per_job, study.n_sequences, 0.10),
        "rss_100": memory_at(recorder.events, per_job, study.n_sequences, 1.0),
        "peak": max((r.get("timings", {}).get("peak_rss_mib", 0.0) for r in runs), default=float("nan")),
        "runner_peak": peak_resident_mib(), "out": str(folder),
    }
