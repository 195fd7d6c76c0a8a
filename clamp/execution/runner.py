"""Running a study: plan the runs, skip finished ones, resume interrupted ones, isolate failures.

Why this file exists: it turns a :class:`clamp.study.design.Study` into files under
``results/<study>/`` and is the home of ``clamp run``, ``clamp list`` and
``clamp report``.

- **Plan.** Each (arm, seed) is keyed by a canonical, versioned hash of the resolved
  arm config and seed (:mod:`clamp.study.keys`; runs recorded under the earlier key are
  recognised).  A run whose ``run.json`` is finished (or diverged) with the same key is
  skipped and its files are not touched; any other run with the same key resumes from
  its last checkpoint.  A run of another configuration is never deleted: it is moved to
  ``runs/.stale/`` (a finished one only with ``--replace``), and a partial rerun that
  would leave two configurations under one arm is refused (:mod:`clamp.execution.reconcile`).
  Runs of an arm that start from the same point are packed onto the run axis
  (``pack=False`` trains each alone).
- **Execute.** Packs go to an :class:`Executor`: in-process for one job, a
  spawn-context process pool otherwise (workers receive plain configs, never a
  model: nnsight wrappers cannot be pickled, and threads must not trace).  A
  distributed executor only needs to implement :meth:`Executor.run`.
- **Isolate.** A pack that raises marks its runs ``failed`` with the traceback;
  a worker process that dies fails only its own pack and the others go on in a fresh
  pool; the exit status is 1 when any run is not finished (2 when the disk filled up).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import errno
import fcntl
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import torch

from clamp.errors import ConfigError
from clamp.model.foreign import is_foreign
from clamp.execution.pack import PackJob, RunSpec, execute_pack
from clamp.execution.progress import Progress
from clamp.execution.provenance import invocation, merge_study_record
from clamp.store import atomic_write_json, checkpoints, read_json, remove_temporaries, run_dir, study_lock
from clamp.study.overrides import apply_overrides, select
from clamp.execution.reconcile import DONE, STALE_DIR, Existing, conflict_message, move_aside, survey
from clamp.study.design import Study, StudyError
from clamp.study.keys import arm_record
from clamp.study.records import study_record
from clamp.study.load import list_studies, load_study
from clamp.study.checks import probe_study, validate_study
from clamp.study.keys import KEY_VERSION, run_key, stop_after
from clamp.store import check_output_folder

EventSink = Callable[[dict], None]
Outcome = list[dict]


class Executor(Protocol):
    """Runs packs somewhere and reports back.

    ``run`` yields ``(job, outcomes)`` as each pack ends (``outcomes`` from
    :func:`clamp.execution.pack.execute_pack`, or the exception that killed the pack's
    worker), and passes progress events to ``on_event`` meanwhile.
    """

    def run(self, jobs: Sequence[PackJob], on_event: EventSink) -> Iterator[tuple[PackJob, Outcome | BaseException]]:
        ...


class InlineExecutor:
    """Runs packs one after another in this process (``--jobs 1``)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, jobs: Sequence[PackJob], on_event: EventSink) -> Iterator[tuple[PackJob, Outcome | BaseException]]:
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            for job in jobs:
                try:
                    yield job, execute_pack(job, on_event)
                except Exception as e:  # noqa: BLE001 - execute_pack reports its own failures; this is a last resort
                    yield job, e
        finally:
            torch.set_num_threads(old)


_worker_queue = None
_worker_claims = None  # shared array: slot i holds the pid of the worker training pack i (0 when none)


def _die_with_parent(parent: int) -> None:
    """End this worker when the runner dies (even by SIGKILL), so no orphan keeps writing files."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def _worker_init(queue, threads: int, parent: int, lock_path: str, claims=None) -> None:  # noqa: ANN001 - multiprocessing objects
    global _worker_queue, _worker_claims
    _die_with_parent(parent)
    _worker_queue = queue
    _worker_claims = claims
    torch.set_num_threads(threads)
    # A shared lock on the study folder: a new `clamp run` waits until this worker has gone.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)


def _worker_run(job: PackJob, slot: int = -1) -> Outcome:
    if _worker_claims is not None and slot >= 0:
        _worker_claims[slot] = os.getpid()  # shared memory: visible to the runner at once, even if we are killed next
    try:
        return execute_pack(job, _worker_queue.put if _worker_queue is not None else None)
    finally:
        if _worker_claims is not None and slot >= 0:
            _worker_claims[slot] = 0


class WorkerDied(RuntimeError):
    """The worker process training a pack ended without reporting (killed by a signal, out of memory, a crash)."""


def _how_it_died(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (often the out-of-memory killer: try fewer --jobs or a smaller pack)" if -code == signal.SIGKILL else ""
    return f"killed by {name}{hint}"


class ProcessExecutor:
    """A local pool of ``jobs`` spawned worker processes, ``threads`` torch threads each.

    A worker that dies (SIGKILL, out of memory, segfault) breaks a
    :class:`concurrent.futures.ProcessPoolExecutor` and every pack still in it; here only
    the pack(s) the dead worker was training fail (:class:`WorkerDied`): the others are
    resubmitted to a fresh pool and go on (a pack that was interrupted restarts from where
    it started, which gives the same numbers).
    """

    def __init__(self, jobs: int, threads: int = 1, lock_path: str | None = None) -> None:
        self.jobs, self.threads, self.lock_path = jobs, threads, lock_path

    def run(self, jobs: Sequence[PackJob], on_event: EventSink) -> Iterator[tuple[PackJob, Outcome | BaseException]]:
        todo = list(jobs)
        while todo:
            todo = yield from self._one_pool(todo, on_event)

    def _one_pool(self, jobs: list[PackJob], on_event: EventSink):  # noqa: ANN202 - a generator returning the packs to retry
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        claims = ctx.Array("q", len(jobs), lock=False)
        lock_path = self.lock_path or os.devnull
        pool = cf.ProcessPoolExecutor(max_workers=min(self.jobs, len(jobs)) or 1, mp_context=ctx, initializer=_worker_init,
                                      initargs=(queue, self.threads, os.getpid(), lock_path, claims))
        futures = {pool.submit(_worker_run, job, i): i for i, job in enumerate(jobs)}
        pending = set(futures)
        done_slots: set[int] = set()
        procs: dict[int, object] = {}
        broken = False
        try:
            while pending and not broken:
                done, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                procs.update(getattr(pool, "_processes", None) or {})
                self._drain(queue, on_event)
                for fut in done:
                    exc = fut.exception()
                    if isinstance(exc, cf.BrokenExecutor):
                        broken = True
                        continue
                    done_slots.add(futures[fut])
                    yield jobs[futures[fut]], (exc if exc is not None else fut.result())
            self._drain(queue, on_event)
        finally:
            in_flight = {i: int(claims[i]) for i in range(len(jobs)) if claims[i] and i not in done_slots}
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        if not broken:
            return []
        self._drain(queue, on_event)
        codes = {pid: getattr(p, "exitcode", None) for pid, p in procs.items()}
        dead = {pid for pid, c in codes.items() if c not in (None, 0, -signal.SIGTERM)}
        culprits = {i for i, pid in in_flight.items() if pid in dead} or set(in_flight)
        if not culprits:  # nothing tells which pack killed its worker: fail what was left rather than loop
            culprits = {i for i in range(len(jobs)) if i not in done_slots}
        for i in sorted(culprits):
            how = _how_it_died(codes.get(in_flight.get(i, -1)))
            yield jobs[i], WorkerDied(f"the worker process training this pack died ({how}); "
                                      "rerun `clamp run` to resume it from its last checkpoint")
        return [jobs[i] for i in range(len(jobs)) if i not in done_slots and i not in culprits]

    @staticmethod
    def _drain(queue, on_event: EventSink) -> None:  # noqa: ANN001
        while True:
            try:
                on_event(queue.get_nowait())
            except Exception:  # noqa: BLE001 - queue.Empty, or a half-torn queue during shutdown
                return


@dataclass(frozen=True)
class Plan:
    """What a ``clamp run`` will do: packs to train, runs to skip, runs of another configuration to move aside.

    ``conflicts`` are finished runs of another configuration that this invocation may not
    replace (see :mod:`clamp.execution.reconcile`); :func:`run_study` refuses to start while any remain.
    """

    jobs: tuple[PackJob, ...]
    skipped: tuple[tuple[str, int, str], ...]  # (arm, seed, status)
    stale: tuple[Existing, ...]
    selected: int
    conflicts: tuple[Existing, ...] = ()


def plan(study: Study, study_dir: Path, runs: Sequence, *, pack: bool = True, replace: bool = False) -> Plan:
    """Decide, for each selected (arm, seed), whether to skip, resume or start it; group into packs.

    Reads the results folder only; nothing is written or moved here.
    """
    groups: dict[tuple, list[RunSpec]] = {}
    skipped = []
    found = survey(study, study_dir, runs, replace=replace)
    records = {a.name: arm_record(study, a) for a in study.arms}
    for arm, seed in runs:
        folder = run_dir(study_dir, arm.name, seed)
        rec = found.matched.get((arm.name, int(seed)))
        start = None
        if rec is not None and rec.get("status") in DONE:
            skipped.append((arm.name, seed, rec["status"]))
            continue
        if rec is not None:
            points = set(records[arm.name]["schedule"]["checkpoints"])
            have = [s for s in checkpoints(folder) if s in points]
            start = max(have) if have else None
        spec = RunSpec(arm=arm.name, seed=int(seed), hash=run_key(study, arm, seed), folder=str(folder.resolve()))
        key = (arm.name, start) if pack and not is_foreign(arm.model) else (arm.name, start, seed)  # foreign: one run each
        groups.setdefault(key, []).append(spec)
    jobs = []
    for i, (key, specs) in enumerate(groups.items()):
        arm = study.arm(key[0])
        rec = records[arm.name]
        jobs.append(PackJob(
            job_id=i, arm=arm.name, model=rec["model"], task=rec["task"], train=rec["train"],
            interventions=rec["interventions"], runs=tuple(specs),
            checkpoints=tuple(rec["schedule"]["checkpoints"]), extra_evals=tuple(rec["schedule"]["extra_evals"]),
            resume_from=key[1], record=rec, metrics=tuple(rec.get("metrics", ())), stop_after=stop_after(study),
        ))
    return Plan(jobs=tuple(jobs), skipped=tuple(skipped), stale=found.stale, selected=len(runs),
                conflicts=found.conflicts)


def _label(job: PackJob) -> str:
    seeds = [r.seed for r in job.runs]
    s = f"s{seeds[0]}" if len(seeds) == 1 else f"s{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else "s" + ",".join(map(str, seeds))
    return f"{job.arm} {s}"


def run_study(study: Study, *, out: str | Path = "results", arms: Sequence[str] | None = None,
              seeds: Sequence[int] | None = None, jobs: int | None = None, threads: int | None = None,
              pack: bool = True, quiet: bool = False, executor: Executor | str | None = None,
              study_file: str | Path | None = None, analyse: bool = True, replace: bool = False,
              executor_options: dict | None = None, validate: bool = True) -> int:
    """Run (or resume) ``study``, then write the summary, statistics and report.

    Args:
        study: a validated study (see :func:`clamp.study.design.load_study`).
        out: parent folder; results go to ``out/<study.name>/``.
        arms, seeds: run only these (default: all).
        jobs: packs trained at once (default: min(cores, packs)); 1 runs in this process.
        threads: torch threads per job (default: 1).
        pack: put the seeds of an arm on one run axis.
        quiet: no progress output.
        executor: where packs run: an :class:`Executor`, or ``"local"`` (default: in-process for one job,
            a process pool otherwise), ``"ray"`` or ``"slurm"`` (see :mod:`clamp.execution.executors`).
        executor_options: options of a named executor, e.g. ``{"address": "head:6379"}`` for Ray or
            ``{"partition": "gpu", "time_min": 120}`` for Slurm.
        analyse: run statistics and build the plots and report afterwards (``summary.csv`` is always written).
        replace: move finished runs of another configuration to ``runs/.stale/`` and train the current one
            (without it such runs stop the command with a :class:`StudyError`; see :mod:`clamp.execution.reconcile`).
        validate: check every arm (task, model, interventions) before anything is written, as
            :func:`clamp.study.design.load_study` does; ``clamp run`` passes False (its study was just loaded).

    Returns:
        The exit status: 0 when every selected run finished and the report was written, 1 otherwise.

    Example:
        >>> # status = run_study(load_study("studies/quickstart.py"), out="results")
    """
    if validate:
        validate_study(study)
    check_output_folder(out)
    selected = select(study, arms, seeds)
    study_dir = Path(out) / study.name
    first = plan(study, study_dir, selected, pack=pack, replace=replace)  # reads only: refuse before writing
    if first.conflicts:
        raise StudyError(conflict_message(study_dir, first.conflicts))
    study_dir.mkdir(parents=True, exist_ok=True)
    with study_lock(study_dir) as lock_path:
        remove_temporaries(study_dir)  # left by a killed writer; the files they were replacing are intact
        the_plan = plan(study, study_dir, selected, pack=pack, replace=replace)
        if the_plan.conflicts:
            raise StudyError(conflict_message(study_dir, the_plan.conflicts))
        cores = os.cpu_count() or 1
        n_jobs = max(1, min(jobs or cores, len(the_plan.jobs) or 1))
        n_threads = threads or 1  # tiny models: one thread per job beats several (and never oversubscribes)
        this = invocation(study_file)
        from clamp.model import native

        this["machine"].update(jobs=n_jobs, threads_per_job=n_threads, packed=pack,
                               kernels=native.status())  # builds the kernels here once, before the workers start
        if isinstance(executor, str) or executor_options:
            from clamp.execution.executors import make_executor

            this["machine"]["executor"] = executor or "local"
            executor = make_executor(executor or "local", jobs=n_jobs, threads=n_threads, study_dir=study_dir,
                                     options=executor_options)
        this["selected"] = {"arms": sorted({a.name for a, _ in selected}), "seeds": sorted({int(s) for _, s in selected}),
                            "replace": replace, "skipped": len(the_plan.skipped),
                            "trained": sum(len(j.runs) for j in the_plan.jobs),
                            "moved_aside": [f"{e.arm}/seed{e.seed}" for e in the_plan.stale]}
        atomic_write_json(study_dir / "study.json",
                          merge_study_record(read_json(study_dir / "study.json"), study_record(study), this))
        done_before = len(the_plan.skipped)
        planned = sum(len(j.runs) * (j.train["n_sequences"] - (j.resume_from or 0)) for j in the_plan.jobs)
        progress = Progress(name=study.name, total_runs=the_plan.selected, done_runs=done_before,
                            n_sequences=study.n_sequences, quiet=quiet, planned=planned)
        if the_plan.skipped:
            progress.message(f"{study.name}: {done_before} run(s) already done with this configuration, skipped "
                             "(their files are kept; move a run's folder away to train it again)")
        for e in the_plan.stale:
            dest = move_aside(study_dir, e)
            progress.message(f"{study.name}: {e.arm}/seed{e.seed} ({e.status}) was run with another configuration "
                             f"({e.why}); moved to {dest.relative_to(study_dir)}, training the current one")
        for job in the_plan.jobs:
            for spec in job.runs:
                if read_json(Path(spec.folder) / "run.json") is None:
                    atomic_write_json(Path(spec.folder) / "run.json",
                                      {"arm": spec.arm, "seed": spec.seed, "status": "pending", "hash": spec.hash,
                                       "key_version": KEY_VERSION})
        if the_plan.jobs:
            progress.message(f"{study.name}: training {sum(len(j.runs) for j in the_plan.jobs)} run(s) in "
                             f"{len(the_plan.jobs)} pack(s), {n_jobs} at a time -> {study_dir}")
        if executor is None:
            executor = InlineExecutor(n_threads) if n_jobs == 1 else ProcessExecutor(n_jobs, n_threads, str(lock_path))
        statuses: dict[tuple[str, int], str] = {(a, s): st for a, s, st in the_plan.skipped}
        by_id = {j.job_id: j for j in the_plan.jobs}
        for j in the_plan.jobs[:n_jobs]:
            progress.start_pack(j.job_id, label=_label(j), n_runs=len(j.runs), start=j.resume_from or 0,
                                n=j.train["n_sequences"])

        ended: set[int] = set()

        def on_event(ev: dict) -> None:
            if ev["job"] in ended:
                return
            if ev["job"] not in progress.packs and ev["job"] in by_id:
                j = by_id[ev["job"]]
                progress.start_pack(j.job_id, label=_label(j), n_runs=len(j.runs), start=j.resume_from or 0,
                                n=j.train["n_sequences"])
            progress.update(ev["job"], ev["seen"], ev.get("n_runs"))

        disk_full = False
        try:
            for job, result in executor.run(the_plan.jobs, on_event):
                if isinstance(result, BaseException):
                    tb = "".join(traceback.format_exception(result))
                    result = _mark_failed(job, result, tb)
                for o in result:
                    statuses[(o["arm"], o["seed"])] = o["status"]
                    disk_full = disk_full or bool(o.get("disk_full"))
                    if o["status"] == "failed" and not o.get("disk_full"):
                        progress.message(f"{job.arm} seed {o['seed']} failed: {o.get('error')}")
                ended.add(job.job_id)
                progress.finish_pack(job.job_id, [o["status"] for o in result])
        finally:
            progress.close()
        bad = sorted((a, s, st) for (a, s), st in statuses.items() if st != "finished")
        if disk_full:
            print(f"clamp: error: no space left on the device holding {study_dir} while writing results; "
                  f"{len(bad)} run(s) stopped. Free some space (or use --out on another disk) and rerun the same "
                  "command: finished runs are kept and the others resume from their last checkpoint.", file=sys.stderr)
            return 2
        code = 0 if not bad else 1
        code = max(code, finish_study(study_dir, quiet=quiet, analyse=analyse))
        if bad:
            lines = ", ".join(f"{a}/seed{s} {st}" for a, s, st in bad)
            print(f"clamp: {len(bad)} of {the_plan.selected} run(s) did not finish: {lines}", file=sys.stderr)
        elif not quiet:
            where = study_dir / "index.html" if analyse else study_dir / "summary.csv"
            print(f"{study.name}: all {the_plan.selected} run(s) finished; see {where}", file=sys.stderr)
        return code


def _mark_failed(job: PackJob, exc: BaseException, tb: str) -> Outcome:
    """A pack whose worker died: mark its unfinished runs failed."""
    out = []
    for spec in job.runs:
        path = Path(spec.folder) / "run.json"
        rec = read_json(path) or {"arm": spec.arm, "seed": spec.seed, "hash": spec.hash}
        if rec.get("status") not in ("finished", "diverged"):
            rec.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=tb)
            try:
                atomic_write_json(path, rec)
            except OSError:
                pass  # a full disk: run.json keeps its last state, which a rerun resumes from
        out.append({"arm": spec.arm, "seed": spec.seed, "status": rec["status"], "error": rec.get("error"),
                    "disk_full": isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)})
    return out


def finish_study(study_dir: str | Path, quiet: bool = False, analyse: bool = True) -> int:
    """Summary, then (with ``analyse``) statistics, plots and report.

    Returns 1 if any step failed (each failure is reported; the runs' files are never touched), else 0.
    """
    from clamp.analysis.report import build_report
    from clamp.analysis.summary import write_summary

    code = 0
    study_dir = Path(study_dir)
    try:
        write_summary(study_dir)
    except Exception as e:  # noqa: BLE001 - keep going: the runs' own files are intact
        print(f"clamp: writing summary.csv failed: {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    if not analyse:
        return code
    # An ImportError inside the statistics is a failure to report (exit 1), never a reason to skip them.
    try:
        from clamp.analysis.stats.pipeline import compute_statistics

        compute_statistics(study_dir, quiet=quiet)
    except ImportError as e:  # a broken import inside the statistics package: never skip them silently
        print(f"clamp: statistics failed to import (results are kept; fix it and rerun `clamp report {study_dir}`): "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    except Exception as e:  # noqa: BLE001
        print(f"clamp: statistics failed (results are kept; rerun `clamp report {study_dir}`): "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    try:
        build_report(study_dir)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        print(f"clamp: building the report failed (results are kept): {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    return code


# --- command line -----------------------------------------------------------------------------

def run_loaded(args: argparse.Namespace, study: Study) -> int:
    """``clamp run`` after the study was loaded and overridden (static checks, without torch, in
    :mod:`clamp.execution.commands`): the probe checks, then the dry run or the run itself."""
    probe_study(study, args.study)  # the probe checks (imports torch), before anything is written or trained
    if args.dry_run:
        check_output_folder(args.out)
        selected = select(study, args.arms, args.seeds)
        p = plan(study, Path(args.out) / study.name, selected, pack=not args.no_pack, replace=args.replace)
        if p.conflicts:
            raise StudyError(conflict_message(Path(args.out) / study.name, p.conflicts))
        for a, s, st in p.skipped:
            print(f"skip   {a} seed {s} ({st})")
        for e in p.stale:
            print(f"stale  {e.arm} seed {e.seed} ({e.status}; {e.why}): moved to runs/{STALE_DIR}/, then trained anew")
        for j in p.jobs:
            how = f"resume at {j.resume_from:,}" if j.resume_from is not None else "start"
            budget = f", {j.train['n_sequences']:,} sequences" if j.train["n_sequences"] != study.n_sequences else ""
            print(f"{how:<6} {_label(j)} ({len(j.runs)} run(s) packed{budget})")
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: need at least 1.")
    from clamp.execution.executors import options_from_args

    return run_study(study, out=args.out, arms=args.arms, seeds=args.seeds, jobs=args.jobs, threads=args.threads,
                     pack=not args.no_pack, quiet=args.quiet, study_file=args.study, analyse=not args.no_report,
                     replace=args.replace, executor=args.executor, executor_options=options_from_args(args),
                     validate=False)


def _report_command(args: argparse.Namespace) -> int:
    study_dir = Path(args.study_dir)
    if not (study_dir / "study.json").is_file():
        raise ConfigError(f"{study_dir}: no study.json here; give a folder written by `clamp run` (results/<study>).")
    code = finish_study(study_dir, quiet=args.quiet)
    if not args.quiet:
        print(f"report: {study_dir / 'index.html'} (open it in a browser; plain text: {study_dir / 'report.md'})")
    return code


def _run_command(args: argparse.Namespace) -> int:
    from clamp.execution.commands import run_command

    return run_command(args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``list`` and ``report`` (defined in :mod:`clamp.execution.commands`, torch-free)."""
    from clamp.execution.commands import register as register_commands

    register_commands(sub)

