"""Packs as a Slurm job array through submitit: one pack per array task, results on the shared file system.

Why this file exists: Slurm is where most academic sweeps run (Singh et al. launched
theirs with submitit).  Each pack becomes one task of a job array asking for
``threads`` CPUs (and GPUs where asked); the task writes its runs' files straight
into ``results/<study>/runs/`` on the cluster's shared file system, as a local
worker does.  The driver (``clamp run`` on the login node) waits for the array,
follows progress from the runs' ``metrics.csv``, and hands outcomes to the runner.

Preemption and time limits: :class:`SlurmPack` is a submitit ``Checkpointable``.
When Slurm preempts a task or its time runs out, submitit requeues it; the
requeued task looks at its runs' folders again and resumes from their latest
common checkpoint (runs already finished, e.g. stopped after their phase change,
are left alone), so only the work since that checkpoint is redone and the
numbers are those of an uninterrupted run.

submitit's logs and pickles go to ``results/<study>/.submitit/``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from clamp.errors import ConfigError
from clamp.execution.pack import PackJob


def _import_submitit():
    try:
        import submitit
    except ImportError as e:
        raise ConfigError("--executor slurm needs submitit: pip install 'clamp[slurm]' (or pip install submitit).") from e
    return submitit


def refresh(job: PackJob) -> tuple[PackJob | None, list[dict]]:
    """``job`` as it stands on disk now: its unfinished runs, resumed from their latest common checkpoint.

    Returns the pack still to train (None when every run is done) and the outcomes of the runs
    already done (finished, diverged or stopped early, with this job's run key).
    """
    from clamp.store import checkpoints, read_json

    done, todo = [], []
    for spec in job.runs:
        rec = read_json(Path(spec.folder) / "run.json") or {}
        if rec.get("hash") == spec.hash and rec.get("status") in ("finished", "diverged"):
            done.append({"arm": spec.arm, "seed": spec.seed, "status": rec["status"], "error": rec.get("error")})
        else:
            todo.append(spec)
    if not todo:
        return None, done
    points = set(job.checkpoints)
    common = None
    for spec in todo:
        have = {s for s in checkpoints(spec.folder) if s in points}
        common = have if common is None else common & have
    start = max(common) if common else None
    if job.resume_from is not None and (start is None or start < job.resume_from):
        start = job.resume_from  # never go back past where the runner planned to resume
    return replace(job, runs=tuple(todo), resume_from=start), done


class SlurmPack:
    """The callable each array task runs: train one pack; on preemption, requeue and resume from disk.

    submitit treats a callable with a ``checkpoint`` method as checkpointable: on preemption or
    time-out it calls it and requeues what it returns.
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def __call__(self, job: PackJob) -> list[dict]:
        import torch

        from clamp.execution.pack import execute_pack

        torch.set_num_threads(self.threads)
        todo, done = refresh(job)
        return done + (execute_pack(todo) if todo is not None else [])

    def checkpoint(self, job: PackJob) -> Any:
        """Called by submitit before a requeue: the run's own checkpoints are the state, so resubmit as is."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, job)


class SlurmExecutor:
    """Submits packs as a Slurm job array with submitit and waits for them.

    Args:
        folder: where submitit keeps logs and pickles (``results/<study>/.submitit``); must be on the
            file system the compute nodes share with the driver, like the results folder.
        jobs: array tasks running at once (``slurm_array_parallelism``).
        threads: CPUs per task (torch threads).
        partition: Slurm partition.
        time_min: time limit per task in minutes (a task past it is requeued and resumes).
        gpus: GPUs per task (default: 1 for a study on ``cuda``, else 0).
        mem_gb: memory per task.
        cluster: submitit's cluster: ``"slurm"`` (default when ``sbatch`` is found) or ``"local"``
            (the same array as processes on this machine; for trying a study out, and for tests).
        extra: any other submitit parameters, e.g. ``{"slurm_account": "lab", "slurm_qos": "high"}``.
        poll: seconds between checks of the array.

    Example:
        >>> # run_study(study, executor="slurm", executor_options={"partition": "cpu", "time_min": 120})
    """

    def __init__(self, *, folder: str | Path, jobs: int = 1, threads: int = 1, partition: str | None = None,
                 time_min: int | None = None, gpus: float | None = None, mem_gb: float | None = None,
                 cluster: str | None = None, extra: dict[str, Any] | None = None, poll: float = 1.0) -> None:
        if cluster not in (None, "slurm", "local"):
            raise ConfigError(f"SlurmExecutor: cluster={cluster!r} is unknown; choose 'slurm' or 'local'.")
        self.folder, self.jobs, self.threads = Path(folder), jobs, threads
        self.partition, self.time_min, self.gpus, self.mem_gb = partition, time_min or 240, gpus, mem_gb
        self.cluster, self.extra, self.poll = cluster, dict(extra or {}), poll
        self.submitted: dict[int, Any] = {}  # job id -> submitit job

    def _executor(self, gpus: float):
        submitit = _import_submitit()
        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        params: dict[str, Any] = dict(timeout_min=self.time_min, cpus_per_task=self.threads, tasks_per_node=1, nodes=1,
                                      name="clamp", slurm_array_parallelism=self.jobs)
        if gpus:
            params["gpus_per_node"] = int(gpus)
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        if self.partition:
            params["slurm_partition"] = self.partition
        params.update(self.extra)
        try:
            ex.update_parameters(**params)
        except (ValueError, TypeError, NameError) as e:  # submitit raises NameError for unknown parameters
            raise ConfigError(f"Slurm options rejected by submitit: {e}\nFix the --slurm-* flags or executor_options.") from e
        return ex

    def run(self, jobs: Sequence[PackJob], on_event) -> Iterator[tuple[PackJob, Any]]:
        if not jobs:
            return
        gpus = self.gpus if self.gpus is not None else (1 if str(jobs[0].train.get("device", "cpu")).startswith("cuda") else 0)
        ex = self._executor(gpus)
        array = ex.map_array(SlurmPack(self.threads), list(jobs))
        pending = dict(zip(array, jobs))
        for sj, job in pending.items():
            self.submitted[job.job_id] = sj
        try:
            while pending:
                for sj, job in list(pending.items()):
                    if sj.done():
                        del pending[sj]
                        try:
                            yield job, sj.result()
                        except Exception as e:  # noqa: BLE001 - a task that failed: the runner marks its runs failed
                            yield job, e
                    else:
                        ev = _progress(job)
                        if ev is not None:
                            on_event(ev)
                if pending:
                    time.sleep(self.poll)
        finally:
            for sj in pending:  # the driver was stopped: do not leave tasks training
                try:
                    sj.cancel(check=False)
                except Exception:  # noqa: BLE001
                    pass


def _progress(job: PackJob) -> dict | None:
    """A progress event read from the files: the last evaluation written by the pack's first unfinished run."""
    from clamp.store import last_evaluation

    for spec in job.runs:
        seen = last_evaluation(Path(spec.folder) / "metrics.csv")
        if seen is not None:
            return {"job": job.job_id, "seen": seen, "n_runs": None}
    return None