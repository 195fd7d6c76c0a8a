"""Training one pack: the seeds of an arm on one run axis, with checkpoints and per-run files.

Why this file exists: this is the code a worker process runs.  It receives a
:class:`PackJob` made only of plain data (configs as dicts, never a model or an
nnsight wrapper, which cannot be pickled), trains with :class:`clamp.training.trainer.Trainer`,
and writes each run's own files: ``metrics.csv`` split by run, ``attention.csv``,
per-run checkpoints and ``run.json``.

Checkpoints are per run even when runs are packed: the packed trainer state is
split along the run axis (every model and Adam tensor has a leading ``R`` axis)
and merged back on resume (:mod:`clamp.execution.checkpoint`), so a run can resume in a different pack.

Divergence: when a run's training loss becomes NaN/inf, or its evaluation loss rises above
:data:`DIVERGENCE_FACTOR` times its value at the first evaluation, it is marked ``diverged``
at once (``run.json`` written), its metrics stop being recorded and it stops
checkpointing, but it keeps riding along on the run axis: runs of a pack do not
interact (per-run parameters, per-run loss terms, elementwise Adam), so the
others train exactly as they would alone.  A pack whose runs have all diverged stops.

Stopping after the transition (``PackJob.stop_after``): a run that crossed the
study's primary phase rule and has trained the margin past it is finished at
that evaluation (``run.json`` records ``stopped_early``; a checkpoint is saved
there) and dropped from the pack: the trainer is rebuilt from the split state of
the others (the path a resume takes), so it costs nothing more and its
pack-mates go on with the same numbers.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from clamp.execution.checkpoint import load_run_state, merge_states, split_state
from clamp.interventions.donors import grafts_record
from clamp.model.foreign import model_from_dict
from clamp.tasks import task_from_dict
from clamp.store import (ATTENTION_HEADER, DISK_FULL, METRICS_HEADER, append_metrics, append_text, atomic_torch_save,
                         atomic_write_json, checkpoint_path, csv_text, is_disk_full, read_curve, read_json,
                         truncate_rows)
from clamp.errors import ConfigError
from clamp.execution.faults import injector
from clamp.fingerprint import changed_code, code_fingerprints
from clamp.importpath import import_study_modules, registered_study_modules, resolve
from clamp.execution.provenance import RUN_SCHEMA, now, run_provenance
from clamp.study.keys import KEY_VERSION
from clamp.phase import Span, run_windows, stop_from_setting, stop_point
from clamp.training.trainer import RunSeeds, Trainer
from clamp.training.config import TrainConfig
from clamp.interventions.triggers import record_triggers, restore_triggers

Sink = Callable[[dict], None]


@dataclass(frozen=True)
class RunSpec:
    """One run of a pack: its seed, its key and its folder."""

    arm: str
    seed: int
    hash: str
    folder: str


@dataclass(frozen=True)
class PackJob:
    """Everything a worker needs to train a pack, as plain picklable (JSON-able) data."""

    job_id: int
    arm: str
    model: dict
    task: dict
    train: dict
    interventions: list
    runs: tuple[RunSpec, ...]
    checkpoints: tuple[int, ...]
    extra_evals: tuple[int, ...]
    resume_from: int | None = None
    record: dict = field(default_factory=dict)  # the arm's study.json record, copied into run.json
    # Study files imported by the process that planned the job (module name -> path): the worker imports them
    # by path first, so what they define (interventions, functions, kinds) is found by import path.
    study_modules: dict = field(default_factory=lambda: _registered_study_modules())
    metrics: tuple[str, ...] = ()  # import paths of the study's user metric functions
    # stop runs after their phase change: clamp.phase.stop_setting's {"margin", "relative", "rule"}, or None
    stop_after: dict | None = None
    study_file: dict | None = None  # {"path", "sha256"} of the study file, recorded in run.json


def _registered_study_modules() -> dict:
    return registered_study_modules()


DIVERGENCE_FACTOR = 100.0


def exploded(loss: float, start: float, factor: float = DIVERGENCE_FACTOR) -> bool:
    """Whether a finite loss has blown up: more than ``factor`` times its starting value.

    A loss that explodes (to 1e11 at lr 10) without ever becoming NaN is diverged, not finished;
    a cross-entropy that rises two orders of magnitude above its value at initialisation
    does not happen in a run that is learning.

    Example:
        >>> exploded(7.6e11, 1.6), exploded(3.0, 1.6)
        (True, False)
    """
    return start > 0 and loss > factor * start


class _StopPack(Exception):
    """Every run of the pack has diverged."""


class _Regroup(Exception):
    """Some runs are past their phase change and margin: finish them and train the others without them."""

    def __init__(self, runs: list["_Run"]) -> None:
        super().__init__(f"{len(runs)} run(s) stop after their phase change")
        self.runs = runs


class _Run:
    """Per-run bookkeeping inside a pack."""

    def __init__(self, spec: RunSpec, index: int) -> None:
        self.spec, self.index = spec, index
        self.folder = Path(spec.folder)
        self.diverged_at: int | None = None
        self.crossed_at: int | None = None  # its decided phase time under the primary rule (with stop_after)
        self.curve: tuple[list[int], list[float]] = ([], [])  # the primary rule's metric so far (with stop_after)
        self.stopped_at: int | None = None
        self.metrics = self.folder / "metrics.csv"
        self.attention = self.folder / "attention.csv"
        self.json = self.folder / "run.json"
        self.record: dict = read_json(self.json) or {}
        self.wall_base = float(self.record.get("timings", {}).get("wall_seconds", 0.0))

    def write_json(self, **updates: Any) -> None:
        self.record.update(updates)
        if updates.get("status") in ("finished", "diverged", "failed") and isinstance(self.record.get("provenance"), dict):
            self.record["provenance"]["ended_at"] = now()
        atomic_write_json(self.json, self.record)


def check_code(expected: dict) -> None:
    """Refuse to train when the user code this process imported is not the code the runs were keyed with.

    The planner fingerprinted it (:mod:`clamp.fingerprint`); a worker -- another process, a Ray or Slurm
    node, a resume -- imports the study file again, and the file may have changed meanwhile.
    """
    if not expected:
        return
    now_code = code_fingerprints(expected, fresh=True)
    changed = changed_code(expected, now_code)
    if changed:
        raise ConfigError(f"{changed} since these runs were planned (the worker imported another version of it); "
                          "nothing was trained. Fix: rerun `clamp run`, which keys the runs by the code as it is now.")


def _intervener_factory(interventions: list, task_cfg: Any) -> Callable | None:
    if not interventions:
        return None
    from clamp.interventions import make_intervener
    from clamp.interventions.registry import intervention_from_dict

    objs = [intervention_from_dict(d) for d in interventions]
    return make_intervener(objs, task_cfg.build())


def execute_pack(job: PackJob, sink: Sink | None = None) -> list[dict]:
    """Train the runs of ``job`` to the end (or resume them), writing every run's files.

    Args:
        job: the pack to train.
        sink: receives progress events ``{"job", "seen", "n_runs", "pid", "rss_mib"}`` (at most a few a
            second; ``rss_mib`` is the worker's resident memory).

    Returns:
        One outcome per run: ``{"arm", "seed", "status", "error"}``.  Never raises for a
        failure inside training: the runs are marked ``failed`` with the traceback instead.
    """
    runs = [_Run(spec, i) for i, spec in enumerate(job.runs)]
    t0 = time.time()
    try:
        return PackRun(job, runs, sink, t0).run()
    except Exception as e:  # noqa: BLE001 - isolate the failure to this pack's runs
        tb = traceback.format_exc()
        disk_full = is_disk_full(e)
        why = f"{DISK_FULL} ({type(e).__name__}: {e}); free some space and rerun: the run resumes from its last " \
              "checkpoint" if disk_full else f"{type(e).__name__}: {e}"
        out = []
        for run in runs:
            if run.diverged_at is None:
                try:
                    run.write_json(status="failed", error=why, traceback=tb, timings=_timings(run, t0, job))
                except OSError:
                    # The disk is full (or gone): run.json keeps its last state, which a rerun resumes from.
                    run.record["status"] = "failed"
            out.append({"arm": run.spec.arm, "seed": run.spec.seed, "status": run.record.get("status", "failed"),
                        "error": why, "disk_full": disk_full})
        return out


def resident_mib() -> float:
    """This process's resident memory now, in MiB (its peak so far where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_resident_mib()


def peak_resident_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _timings(run: _Run, t0: float, job: PackJob, finished: bool = False) -> dict:
    prev = run.record.get("timings", {})
    t = {"started_at": prev.get("started_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t0)),
         "wall_seconds": round(run.wall_base + time.time() - t0, 3), "packed_with": len(job.runs),
         "attempts": prev.get("attempts", 1), "peak_rss_mib": round(peak_resident_mib(), 1)}
    if finished:
        t["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return t


class PackRun:
    """Training one pack to its end: the trainer, the runs on its run axis, and their files.

    One object per :func:`execute_pack` call.  :meth:`run` trains on the schedule
    (evaluations, checkpoints), marks runs that diverge, and finishes runs that stop after
    their phase change by rebuilding the trainer from the others' split state.
    """

    def __init__(self, job: PackJob, runs: list[_Run], sink: Sink | None, t0: float) -> None:
        import_study_modules(job.study_modules)  # before anything is rebuilt from its dict
        check_code(job.record.get("code") or {})
        self.job, self.runs, self.sink, self.t0 = job, runs, sink, t0
        self.model_cfg = model_from_dict(job.model)  # a ModelConfig, or a foreign ModelSpec (clamp.model.foreign)
        self.task_cfg = task_from_dict(job.task)
        self.train_cfg = TrainConfig.from_dict(job.train)
        self.trainer = self.build(runs)
        self.members = list(runs)  # the runs on the trainer's run axis, in order (run.index is the position)
        self.stop = job.stop_after
        if self.stop is not None:
            self.stop_rule, self.phase_rule = stop_from_setting(self.stop)
        self.ckpts, self.extra = set(job.checkpoints), set(job.extra_evals)
        self.last_eval = -1
        self.last_sink = 0.0
        self.fault = injector(job.arm, [r.spec.seed for r in runs])  # None unless CLAMP_FAULT asks for one (tests)

    def build(self, members: list[_Run]) -> Trainer:
        return Trainer(self.model_cfg, self.task_cfg, self.train_cfg, [RunSeeds.from_seed(r.spec.seed) for r in members],
                       intervener_factory=_intervener_factory(self.job.interventions, self.task_cfg),
                       metrics=[resolve(p) for p in self.job.metrics])

    # ----------------------------------------------------------------- starting (or resuming)

    def start(self) -> None:
        """Write each run's starting record, load the checkpoint to resume from, and trim files past it."""
        job, trainer = self.job, self.trainer
        prov = run_provenance()
        for run in self.runs:
            run.folder.mkdir(parents=True, exist_ok=True)
            prev_timings = run.record.get("timings", {})
            attempts = prev_timings.get("attempts", 0) + 1
            earlier = list(run.record.get("earlier_attempts", []))
            if job.resume_from is not None and isinstance(run.record.get("provenance"), dict):
                earlier.append(run.record["provenance"])  # a resumed run keeps who computed its first part
            seeds = RunSeeds.from_seed(run.spec.seed)
            run.record = {
                "schema_version": RUN_SCHEMA,
                "arm": run.spec.arm, "seed": run.spec.seed,
                "seeds": {"init": seeds.init, "data": seeds.data, "eval": seeds.eval},
                "status": "running", "hash": run.spec.hash, "key_version": KEY_VERSION, "config": job.record,
                "resumed_from": job.resume_from,
                "provenance": dict(prov),
                **({"initial_loss": run.record["initial_loss"]} if job.resume_from is not None and "initial_loss" in run.record else {}),
                "earlier_attempts": earlier,
                "timings": {**prev_timings, "attempts": attempts},
            }
            grafts = grafts_record(job.interventions, run.spec.seed)  # per-seed donors used (absent when none)
            if grafts:
                run.record["grafts"] = grafts
            if job.study_file:
                run.record["study_file"] = dict(job.study_file)
        if job.resume_from is not None:
            states = [load_run_state(checkpoint_path(r.folder, job.resume_from)) for r in self.runs]
            trainer.load_state_dict(merge_states(states))
            restore_triggers(trainer, self.runs, job.resume_from)  # triggered windows: state rebuilt from metrics.csv
            if trainer.seen != job.resume_from:
                raise RuntimeError(f"checkpoint at {job.resume_from} holds step {trainer.step}; the study's batch size changed?")
        # A resume from the checkpoint at 0 evaluates at 0 again (trainer.step == 0 below): keep no row of 0 then.
        keep_to = job.resume_from if job.resume_from else -1
        for run in self.runs:
            truncate_rows(run.metrics, METRICS_HEADER, keep_to)
            truncate_rows(run.attention, ATTENTION_HEADER, keep_to)
            if job.resume_from is None:
                for p in (run.folder / "checkpoints").glob("*.pt"):
                    p.unlink()
            elif self.stop is not None:
                run.curve = read_curve(run.metrics, self.phase_rule.metric, up_to=job.resume_from)
                run.crossed_at, _ = stop_point(*run.curve, self.phase_rule, self.stop_rule, windows=self.windows(run))
            run.write_json(timings=_timings(run, self.t0, job))

    # ----------------------------------------------------------------- during training

    def live(self) -> list[_Run]:
        return [r for r in self.members if r.diverged_at is None]

    def diverge(self, run: _Run, seen: int, why: str) -> None:
        run.diverged_at = seen
        run.write_json(status="diverged", diverged_at=seen, error=why,
                       timings=_timings(run, self.t0, self.job, finished=True))

    def report(self, seen: int) -> None:
        if self.sink is not None:
            self.sink({"job": self.job.job_id, "seen": seen, "n_runs": len(self.live()), "pid": os.getpid(),
                       "rss_mib": resident_mib()})

    def on_step(self, seen: int, losses: Tensor) -> None:
        if self.fault is not None:
            self.fault(seen)
        for run in self.live():
            v = float(losses[run.index])
            if not math.isfinite(v):
                self.diverge(run, seen, f"training loss became {v} at {seen} sequences seen")
        if not self.live():
            raise _StopPack
        now = time.time()
        if self.sink is not None and now - self.last_sink > 0.5:
            self.last_sink = now
            self.report(seen)

    def on_eval(self, seen: int, metrics: dict[str, Tensor]) -> None:
        if seen == self.last_eval:
            return  # Trainer.run evaluates at 0 on every call made before the first step
        self.last_eval = seen
        loss = metrics.get("train/loss")
        for run in self.live():
            if loss is not None and not math.isfinite(float(loss[run.index])):
                self.diverge(run, seen, f"evaluation loss became {float(loss[run.index])} at {seen} sequences seen")
                continue
            append_metrics(run.metrics, seen, run.spec.seed, {name: metrics[name][run.index] for name in metrics})
            if record_triggers(self.trainer, run, metrics, seen):
                run.write_json()
            if loss is not None:
                v = float(loss[run.index])
                start = run.record.setdefault("initial_loss", v)  # the first evaluation's (kept through resumes)
                if exploded(v, start):
                    self.diverge(run, seen, f"evaluation loss {v:.4g} at {seen} sequences seen is more than "
                                            f"{DIVERGENCE_FACTOR:g}x its starting value {start:.4g} (no NaN, but diverged)")
        if not self.live():
            raise _StopPack
        values = None if self.stop is None else metrics.get(self.phase_rule.metric)
        if values is not None:
            stopping = []
            for run in self.live():
                run.curve[0].append(seen)
                run.curve[1].append(float(values[run.index]))
                # The statistics' own phase time (clamp.phase.crossing_time) decides where a run stops.
                run.crossed_at, stop_at = stop_point(*run.curve, self.phase_rule, self.stop_rule,
                                                     windows=self.windows(run))
                if stop_at is not None and seen < self.train_cfg.n_sequences:
                    stopping.append(run)
            if stopping:
                raise _Regroup(stopping)

    def windows(self, run: _Run) -> list[Span]:
        """The run's intervention windows so far (fixed ones, and triggered ones where its events put them)."""
        if not self.phase_rule.outside_windows:
            return []
        events = {name: e["detected_at"] for name, e in (run.record.get("triggers") or {}).items()
                  if e.get("detected_at") is not None}
        return run_windows(self.job.interventions, events)

    def save(self, run: _Run, state: dict, seen: int) -> None:
        state.update(seen=seen, hash=run.spec.hash, seed=run.spec.seed)
        atomic_torch_save(checkpoint_path(run.folder, seen), state)
        run.write_json(last_checkpoint=seen, timings=_timings(run, self.t0, self.job))

    def checkpoint(self, parts: list[dict] | None = None) -> None:
        seen = self.trainer.seen
        _record_attention(self.trainer, self.live(), seen)
        parts = parts if parts is not None else split_state(self.trainer.state_dict(), len(self.members))
        for run in self.live():
            self.save(run, parts[run.index], seen)

    def schedule(self) -> None:
        """Train to the end: evaluations on the trainer's cadence, plus every checkpoint and dense point."""
        trainer = self.trainer
        if trainer.step == 0:
            trainer.run(until=0, on_eval=self.on_eval)
            if 0 in self.ckpts:
                self.checkpoint()
        for point in sorted(p for p in self.ckpts | self.extra if p > trainer.seen):
            trainer.run(until=point, on_eval=self.on_eval, on_step=self.on_step)
            if self.last_eval != trainer.seen:
                self.on_eval(trainer.seen, trainer.evaluate())
            if point in self.ckpts:
                self.checkpoint()
        trainer.run(on_eval=self.on_eval, on_step=self.on_step)  # to the configured end, if the schedule stopped short

    def regroup(self, stopping: list[_Run]) -> None:
        """Finish the runs past their margin (checkpoint, attention, run.json), then rebuild the trainer from
        the others' split state: the stopped runs cost nothing more, the others go on with the same numbers."""
        seen = self.trainer.seen
        parts = split_state(self.trainer.state_dict(), len(self.members))
        if seen in self.ckpts:
            self.checkpoint(parts)
        else:
            _record_attention(self.trainer, stopping, seen)
            for run in stopping:
                self.save(run, parts[run.index], seen)
        for run in stopping:
            run.stopped_at = seen
            run.write_json(status="finished", sequences_seen=seen,
                           timings=_timings(run, self.t0, self.job, finished=True),
                           stopped_early={"at": seen, "crossed_at": run.crossed_at, "budget": self.train_cfg.n_sequences,
                                          "margin": self.stop["margin"], "relative": self.stop["relative"],
                                          "rule": self.phase_rule.to_dict()})
        keep = [r for r in self.members if r.stopped_at is None]
        if not keep:
            self.members = []
            return
        self.trainer = self.build(keep)
        self.trainer.load_state_dict(merge_states([parts[r.index] for r in keep]))
        restore_triggers(self.trainer, keep, seen)
        for i, run in enumerate(keep):
            run.index = i
        self.members = keep
        self.report(seen)

    # ----------------------------------------------------------------- the whole pack

    def run(self) -> list[dict]:
        """Train the pack to its end; returns one outcome per run: ``{"arm", "seed", "status", "error"}``."""
        self.start()
        while self.members:
            try:
                self.schedule()
                break
            except _StopPack:
                break
            except _Regroup as regroup:
                self.regroup(regroup.runs)
        out = []
        for run in self.runs:
            if run.diverged_at is None and run.stopped_at is None:
                extra_info = {} if self.stop is None else {"crossed_at": run.crossed_at}
                run.write_json(status="finished", sequences_seen=self.trainer.seen,
                               timings=_timings(run, self.t0, self.job, finished=True), **extra_info)
            out.append({"arm": run.spec.arm, "seed": run.spec.seed, "status": run.record["status"],
                        "error": run.record.get("error")})
        if self.sink is not None:
            self.sink({"job": self.job.job_id, "seen": self.trainer.seen, "n_runs": 0, "pid": os.getpid(),
                       "rss_mib": resident_mib()})
        return out


@torch.no_grad()
def _record_attention(trainer: Trainer, runs: list[_Run], seen: int) -> None:
    """Append the mean attention pattern of every head (train evaluation set) to each run's ``attention.csv``."""
    batch = trainer.eval_sets["train"]
    names = trainer.pattern_names
    if trainer.intervener is None:
        _, cache = trainer.model.run_with_cache(batch, names)
    else:
        _, cache = trainer.intervener.forward(batch, trainer.seen, names, False)
        trainer.intervener.firing_metrics()  # this extra forward is not a training event: drop its counts
    for run in runs:
        rows = []
        for layer, name in enumerate(names):
            mean = cache[name][run.index].float().mean(0).cpu()  # (H, Tq, Tk)
            H, T, _ = mean.shape
            for h in range(H):
                for q in range(T):
                    for k in range(q + 1):
                        rows.append((seen, run.spec.seed, layer, h, q, k, f"{float(mean[h, q, k]):.6g}"))
        append_text(run.attention, csv_text(rows))
