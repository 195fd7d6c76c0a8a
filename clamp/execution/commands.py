"""The ``run``, ``list`` and ``report`` commands: parsed and checked before torch is imported.

Why this file exists: ``clamp list`` and a rejected study file must answer in about a second, and
:mod:`clamp.execution.runner` imports torch (the packs it plans are torch objects).  The commands
are parsed here, the study is loaded and its overrides applied with the static checks only
(:func:`clamp.study.load.load_study`, torch-free), and the runner is imported only once the study
passed them; the probe checks (:func:`clamp.study.checks.probe_study`) then run before the dry run
or any training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clamp.errors import ConfigError
from clamp.store import check_output_folder
from clamp.study.design import Study, StudyError, evaluation_grid, outlasting_windows
from clamp.study.load import list_studies, load_study
from clamp.study.overrides import apply_overrides, select


def run_command(args: argparse.Namespace) -> int:
    """``clamp run``: the static checks here (no torch), then :func:`run_checked`."""
    study = load_study(args.study)
    study = apply_overrides(study, args.set or [])
    return run_checked(args, study)


def run_checked(args: argparse.Namespace, study: Study) -> int:
    """``clamp run`` once the study passed the static checks: the probe checks (torch), then the dry run or the run."""
    from clamp.execution.plan import STALE_DIR, conflict_message, job_label, plan  # torch: only past the static checks
    from clamp.execution.runner import run_study
    from clamp.study.checks import probe_study

    probe_study(study, args.study)  # the probe checks (imports torch), before anything is written or trained
    if args.dry_run:
        check_output_folder(args.out)
        selected = select(study, args.arms, args.seeds)
        p = plan(study, Path(args.out) / study.name, selected, pack=not args.no_pack, replace=args.replace,
                 accept_unknown_code=args.accept_unknown_code)
        if p.conflicts:
            raise StudyError(conflict_message(Path(args.out) / study.name, p.conflicts))
        import dataclasses
        import os

        from clamp.execution.schedule import scheduled

        workers = 1 if args.no_pack else (args.jobs or os.cpu_count() or 1)
        p = dataclasses.replace(p, jobs=scheduled(study, Path(args.out) / study.name, p.jobs, workers))
        print(f"grid   {evaluation_grid(study)}")
        for line in outlasting_windows(study):
            print(f"note   {line}")
        for a, s, st in p.skipped:
            print(f"skip   {a} seed {s} ({st})")
        for a, s, _ in p.accepted:
            print(f"accept {a} seed {s} (code unknown: written before clamp recorded it; --accept-unknown-code)")
        for e in p.stale:
            print(f"stale  {e.arm} seed {e.seed} ({e.status}; {e.why}): moved to runs/{STALE_DIR}/, then trained anew")
        for j in p.jobs:
            how = f"resume at {j.resume_from:,}" if j.resume_from is not None else "start"
            budget = f", {j.train['n_sequences']:,} sequences" if j.train["n_sequences"] != study.n_sequences else ""
            print(f"{how:<6} {job_label(j)} ({len(j.runs)} run(s) packed{budget})")
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: need at least 1.")
    from clamp.execution.executors import options_from_args

    return run_study(study, out=args.out, arms=args.arms, seeds=args.seeds, jobs=args.jobs, threads=args.threads,
                     pack=not args.no_pack, quiet=args.quiet, study_file=args.study, analyse=not args.no_report,
                     replace=args.replace, executor=args.executor, executor_options=options_from_args(args),
                     validate=False, accept_unknown_code=args.accept_unknown_code)


def _report_command(args: argparse.Namespace) -> int:
    from clamp.execution.runner import finish_study  # torch, pandas: only when the command runs

    study_dir = Path(args.study_dir)
    if not (study_dir / "study.json").is_file():
        raise ConfigError(f"{study_dir}: no study.json here; give a folder written by `clamp run` (results/<study>).")
    code = finish_study(study_dir, quiet=args.quiet)
    if not args.quiet:
        print(f"report: {study_dir / 'index.html'} (open it in a browser; plain text: {study_dir / 'report.md'})")
    return code


def _list_command(args: argparse.Namespace) -> int:
    found = list_studies(args.dir)
    if not found:
        print(f"no study files in {args.dir}/")
        return 0
    print(f"studies in {args.dir}/ (static checks only: configs, hook names, heads, windows; "
          "`clamp run FILE --dry-run` also runs each intervention on a probe batch)")
    code = 0
    for path, study in found:
        if isinstance(study, StudyError):
            print(f"{path}: ERROR {study}")
            code = 1
            continue
        arms = ", ".join(a.name for a in study.arms)
        first = study.description.strip().splitlines()[0] if study.description.strip() else ""
        print(f"{path}  {study.name}: arms [{arms}], seeds {list(study.seeds)}, {study.n_sequences:,} sequences"
              + (f"\n    {first}" if first else ""))
    return code


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``list`` and ``report`` to the ``clamp`` command line."""
    p = sub.add_parser("run", help="run (or resume) a study file and write results/<study>/",
                       description="Train every arm x seed of a study; rerunning skips finished runs and resumes interrupted ones.")
    p.add_argument("study", help="a study file, e.g. studies/quickstart.py")
    p.add_argument("--arms", nargs="+", metavar="ARM", help="run only these arms")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="run only these seeds (of the study's)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a field: arms.control.lr=3e-5, arms.*.model.d_model=16, n_sequences=20000, seeds=0,1,2")
    p.add_argument("--out", default="results", metavar="DIR", help="parent folder of results/<study>/ (default: results)")
    p.add_argument("--jobs", type=int, metavar="N", help="packs trained at once in worker processes (default: min(cores, packs))")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads per job (default: 1)")
    p.add_argument("--no-pack", action="store_true", help="train each seed alone instead of packing an arm's seeds on the run axis")
    p.add_argument("--quiet", action="store_true", help="no progress output (for CI)")
    p.add_argument("--no-report", action="store_true",
                   help="skip statistics, plots and report.md (summary.csv is still written; build them later with `clamp report`)")
    p.add_argument("--replace", action="store_true",
                   help="finished runs of another configuration are moved to runs/.stale/ (never deleted) and the "
                        "current configuration is trained; without it, clamp run refuses to touch them")
    p.add_argument("--accept-unknown-code", action="store_true",
                   help="keep finished runs written before clamp recorded the fingerprints of study-file functions "
                        "(their code is unknown); without it they are refused like runs of another configuration. "
                        "The acceptance is written into each such run's run.json")
    p.add_argument("--dry-run", action="store_true", help="validate and show what would run, without training")
    from clamp.execution.executors import add_arguments

    add_arguments(p)
    p.set_defaults(func=run_command)

    p = sub.add_parser("list", help="list the study files in studies/")
    p.add_argument("--dir", default="studies", help="folder of study files (default: studies)")
    p.set_defaults(func=_list_command)

    p = sub.add_parser("report", help="rebuild summary, statistics, plots and report.md from stored CSVs (no training)")
    p.add_argument("study_dir", help="a results folder, e.g. results/quickstart")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_report_command)


__all__ = ["register", "run_checked", "run_command"]
