"""Which packs to train, in which order, so that a study's workers end together.

Why this file exists: the planner (:mod:`clamp.execution.plan`) packs the runs of an arm together, the
cheapest way to train many seeds on one core.  But a study's wall time is set by its longest pack: in the
Singh flagship the control's five runs (up to 1.4e6 sequences each) trained as one pack on one worker
while the other worker finished everything else and waited.  Packing does not change a run's numbers
(a packed run is bit-identical to the same run trained alone), so the schedule is free to choose:

- a pack's step costs about one unit plus one per run still in it (``clamp bench`` on the flagship's shape:
  one run 90 µs per sequence, five 266 µs), and runs leave a pack as they stop, so its expected cost is its
  longest run's expected length plus the sum of all its runs' lengths; a run's expected length is its budget, or, for a study that stops runs after their phase change,
  the median stop of the arm's runs already finished in this results folder when there are any;
- the costliest pack that has more than one run is split in two, its longest-expected runs together (so
  the long runs end up in small packs), as long as that brings the study's expected end forward;
- packs are handed out longest first (the longest-processing-time rule), so the long ones start at once
  and the short ones fill in around them.

With one worker nothing is split (one pack per arm is the most work per core-second).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Sequence

from clamp.execution.pack import PackJob, RunSpec
from clamp.store import read_json


def expected_length(job: PackJob, spec: RunSpec, history: dict[str, list[int]]) -> float:
    """Sequences this run is expected to train from where it starts: its budget, or its arm's median stop so far.

    Example:
        >>> job = PackJob(job_id=0, arm="a", model={}, task={}, train={"n_sequences": 1000}, interventions=[],
        ...               runs=(), checkpoints=(), extra_evals=(), stop_after={"margin": 10})
        >>> expected_length(job, None, {}), expected_length(job, None, {"a": [200, 400, 300]})
        (1000.0, 300.0)
    """
    budget = float(job.train["n_sequences"])
    if job.stop_after and history.get(job.arm):
        budget = min(budget, float(statistics.median(history[job.arm])))
    return max(budget - float(job.resume_from or 0), 1.0)


def stop_history(study_dir: str | Path, arms: Sequence[str]) -> dict[str, list[int]]:
    """Where the finished runs of each arm stopped after their phase change (``run.json``'s ``stopped_early``)."""
    out: dict[str, list[int]] = {}
    root = Path(study_dir) / "runs"
    for arm in arms:
        for rec_path in sorted((root / arm).glob("seed*/run.json")) if (root / arm).is_dir() else []:
            rec = read_json(rec_path) or {}
            stop = rec.get("stopped_early") or {}
            if rec.get("status") == "finished" and stop.get("at"):
                out.setdefault(arm, []).append(int(stop["at"]))
    return out


def pack_cost(lengths: Sequence[float]) -> float:
    """The expected cost of a pack: its longest run's length (a step's fixed cost, for as long as the pack lives)
    plus every run's own length (each run's share of each step it takes part in).

    Example:
        >>> pack_cost([100, 200]), pack_cost([300])
        (500, 600)
    """
    return max(lengths) + sum(lengths) if lengths else 0.0


def makespan(costs: Sequence[float], workers: int) -> float:
    """When the last worker finishes, handing out packs longest first to whichever worker is free.

    Example:
        >>> makespan([4, 3, 3, 2], 2), makespan([6, 1], 2)
        (6.0, 6.0)
    """
    loads = [0.0] * workers
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def balance(jobs: Sequence[PackJob], workers: int, history: dict[str, list[int]] | None = None) -> tuple[PackJob, ...]:
    """The packs to train, split where one would outlast a balanced share, longest first; job ids renumbered.

    Example:
        >>> def job(arm, n, length):
        ...     runs = tuple(RunSpec(arm=arm, seed=s, hash="", folder="") for s in range(n))
        ...     return PackJob(job_id=0, arm=arm, model={}, task={}, train={"n_sequences": length}, interventions=[],
        ...                    runs=runs, checkpoints=(), extra_evals=())
        >>> [(j.arm, len(j.runs)) for j in balance([job("short", 5, 100), job("long", 5, 1000)], 2)]
        [('long', 3), ('long', 2), ('short', 5)]
        >>> [(j.arm, len(j.runs)) for j in balance([job("short", 5, 100), job("long", 5, 1000)], 1)]
        [('long', 5), ('short', 5)]
    """
    history = history or {}
    units: list[tuple[PackJob, list[tuple[RunSpec, float]]]] = []
    for job in jobs:
        runs = sorted(((spec, expected_length(job, spec, history)) for spec in job.runs), key=lambda r: -r[1])
        units.append((job, runs))

    def cost(unit: tuple[PackJob, list[tuple[RunSpec, float]]]) -> float:
        return pack_cost([length for _, length in unit[1]])

    if workers > 1:
        while True:
            units.sort(key=lambda u: -cost(u))
            i = next((k for k, u in enumerate(units) if len(u[1]) > 1), None)
            if i is None:
                break
            job, runs = units[i]
            half = math.ceil(len(runs) / 2)
            trial = units[:i] + [(job, runs[:half]), (job, runs[half:])] + units[i + 1:]
            if makespan([cost(u) for u in trial], workers) >= makespan([cost(u) for u in units], workers) - 1e-9:
                break
            units = trial
    units.sort(key=lambda u: -cost(u))
    out = []
    for i, (job, runs) in enumerate(units):
        keep = {spec.seed for spec, _ in runs}
        out.append(dataclasses.replace(job, job_id=i, runs=tuple(s for s in job.runs if s.seed in keep)))
    return tuple(out)


def scheduled(study, study_dir: str | Path, jobs: Sequence[PackJob], workers: int) -> tuple[PackJob, ...]:
    """The study's planned packs in the order and sizes to train them on ``workers`` (:func:`balance`), with the
    folder's stops so far as the expected lengths of a study that stops runs after their phase change."""
    history = stop_history(study_dir, [a.name for a in study.arms]) if study.stop_after_phase else {}
    return balance(jobs, workers, history)


__all__ = ["balance", "expected_length", "makespan", "pack_cost", "scheduled", "stop_history"]
