"""Running a study: plan the runs, skip finished ones, resume interrupted ones, isolate failures.

Why this file exists: it turns a :class:`clamp.study.design.Study` into files under
``results/<study>/`` (:func:`run_study`), then the summary, statistics and pages
(:func:`finish_study`).  The command line is :mod:`clamp.execution.commands`.

- **Plan** (:mod:`clamp.execution.plan`): a run finished (or diverged) with the same key is
  skipped and its files are not touched; any other run with the same key resumes from
  its last checkpoint; a run of another configuration is never deleted (moved to
  ``runs/.stale/``, a finished one only with ``--replace``), and a partial rerun that
  would leave two configurations under one arm is refused.
- **Execute.** Packs go to an executor (:mod:`clamp.execution.executors`): in-process for
  one job, a spawn-context process pool otherwise, Ray or Slurm on request.
- **Isolate.** A pack that raises marks its runs ``failed`` with the traceback;
  a worker process that dies fails only its own pack and the others go on in a fresh
  pool; the exit status is 1 when any run is not finished (2 when the disk filled up).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from clamp.execution.executors.local import Executor, InlineExecutor, Outcome, ProcessExecutor
from clamp.execution.pack import PackJob
from clamp.execution.schedule import scheduled
from clamp.execution.plan import conflict_message, job_label, move_aside, plan
from clamp.execution.progress import Progress
from clamp.execution.provenance import invocation, merge_study_record, now
from clamp.fingerprint import file_digest
from clamp.store import (DISK_FULL, atomic_write_json, check_output_folder, is_disk_full, read_json, remove_temporaries,
                         run_dir, study_lock)
from clamp.study.checks import validate_study
from clamp.study.design import Study, StudyError, outlasting_windows
from clamp.study.keys import KEY_VERSION
from clamp.study.overrides import select
from clamp.study.records import study_record


def run_study(study: Study, *, out: str | Path = "results", arms: Sequence[str] | None = None,
              seeds: Sequence[int] | None = None, jobs: int | None = None, threads: int | None = None,
              pack: bool = True, quiet: bool = False, executor: Executor | str | None = None,
              study_file: str | Path | None = None, analyse: bool = True, replace: bool = False,
              executor_options: dict | None = None, validate: bool = True, accept_unknown_code: bool = False) -> int:
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
            (without it such runs stop the command with a :class:`StudyError`; see :mod:`clamp.execution.plan`).
        validate: check every arm (task, model, interventions) before anything is written, as
            :func:`clamp.study.load.load_study` does; ``clamp run`` passes False (its study was just loaded).
        accept_unknown_code: keep finished runs written before clamp recorded the fingerprints of user code
            (their code is unknown) instead of refusing them; the acceptance is written into their ``run.json``.

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
    first = plan(study, study_dir, selected, pack=pack, replace=replace,  # reads only: refuse before writing
                 accept_unknown_code=accept_unknown_code)
    if first.conflicts:
        raise StudyError(conflict_message(study_dir, first.conflicts))
    study_dir.mkdir(parents=True, exist_ok=True)
    with study_lock(study_dir) as lock_path:
        remove_temporaries(study_dir)  # left by a killed writer; the files they were replacing are intact
        the_plan = plan(study, study_dir, selected, pack=pack, replace=replace, accept_unknown_code=accept_unknown_code)
        if the_plan.conflicts:
            raise StudyError(conflict_message(study_dir, the_plan.conflicts))
        cores = os.cpu_count() or 1
        workers = jobs or cores
        # the packs' order and size: longest first, a long arm split where that ends the study sooner
        the_plan = dataclasses.replace(the_plan, jobs=scheduled(study, study_dir, the_plan.jobs, workers if pack else 1))
        n_jobs = max(1, min(workers, len(the_plan.jobs) or 1))
        n_threads = threads or 1  # tiny models: one thread per job beats several (and never oversubscribes)
        this = invocation(study_file)
        if study_file:  # the study file's hash, for the reader (comments and docstrings are not part of any key)
            this["study_file_sha256"] = file_digest(study_file)
            the_plan = dataclasses.replace(the_plan, jobs=tuple(
                dataclasses.replace(j, study_file={"path": str(study_file), "sha256": this["study_file_sha256"]})
                for j in the_plan.jobs))
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
        if the_plan.jobs:
            for line in outlasting_windows(study):
                progress.message(f"{study.name}: {line}")
        if the_plan.skipped:
            progress.message(f"{study.name}: {done_before} run(s) already done with this configuration, skipped "
                             "(their files are kept; move a run's folder away to train it again)")
        for arm, seed, code in the_plan.accepted:
            path = run_dir(study_dir, arm, seed) / "run.json"
            rec = read_json(path) or {}
            rec["code_accepted"] = {"code": code, "at": now(), "by": "clamp run --accept-unknown-code",
                                    "note": "written before clamp recorded the code of user functions: the code "
                                            "these numbers came from is unknown"}
            atomic_write_json(path, rec)
            progress.message(f"{study.name}: {arm}/seed{seed}: code unknown (written before clamp recorded it), "
                             "kept as asked by --accept-unknown-code (recorded in its run.json)")
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
            progress.start_pack(j.job_id, label=job_label(j), n_runs=len(j.runs), start=j.resume_from or 0,
                                n=j.train["n_sequences"])

        ended: set[int] = set()

        def on_event(ev: dict) -> None:
            if ev["job"] in ended:
                return
            if ev["job"] not in progress.packs and ev["job"] in by_id:
                j = by_id[ev["job"]]
                progress.start_pack(j.job_id, label=job_label(j), n_runs=len(j.runs), start=j.resume_from or 0,
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
                    "disk_full": is_disk_full(exc)})
    return out


def finish_study(study_dir: str | Path, quiet: bool = False, analyse: bool = True) -> int:
    """Summary, then (with ``analyse``) statistics, plots and report.

    Returns 1 if any step failed (each failure is reported; the runs' files are never touched), else 0.
    """
    from clamp.analysis.report import build_report
    from clamp.analysis.summary import write_summary

    code = 0
    study_dir = Path(study_dir)

    def failed(what: str, e: BaseException, *, trace: bool = False) -> int:
        if is_disk_full(e):
            print(f"clamp: error: {DISK_FULL} while {what} ({study_dir}); the runs' files are kept. Free some space "
                  f"(or copy the folder to another disk) and run `clamp report {study_dir}`.", file=sys.stderr)
            return 2
        if trace:
            traceback.print_exc()
        print(f"clamp: {what} failed (results are kept; rerun `clamp report {study_dir}`): {type(e).__name__}: {e}",
              file=sys.stderr)
        return 1

    try:
        write_summary(study_dir)
    except Exception as e:  # noqa: BLE001 - keep going: the runs' own files are intact
        code = max(code, failed("writing summary.csv", e))
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
    except Exception as e:  # noqa: BLE001 - reported; the runs' files are intact
        code = max(code, failed("computing the statistics", e))
    try:
        build_report(study_dir)
    except Exception as e:  # noqa: BLE001 - reported (with its traceback unless the disk is full)
        code = max(code, failed("building the report", e, trace=True))
    return code


__all__ = ["finish_study", "run_study"]
