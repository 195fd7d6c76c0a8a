"""Where packs run: the local pool, a Ray cluster, or a Slurm cluster through submitit.

Why this package exists: a study grows past one machine, and clamp hands its packs
to the engines researchers already run (Ray, Slurm via submitit) instead of a
home-made scheduler.  Every executor implements
:class:`clamp.execution.executors.local.Executor` (``run(jobs, on_event)`` yielding each
pack's outcomes or the exception that killed it), so planning, skipping,
resuming, failure isolation, progress and the report are the runner's, the same
for every engine; a pack computes the same numbers wherever it runs.

What enters: :class:`clamp.execution.pack.PackJob` s.  What leaves: each run's files
in ``results/<study>/runs/`` (written by the worker on a shared file system, or
returned as bytes and written by the driver, see :mod:`.transfer`) and outcomes.

Ray and submitit are optional (``pip install 'clamp[ray]'`` / ``'clamp[slurm]'``) and
imported only when their executor runs; ``import clamp`` never imports them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clamp.errors import ConfigError

EXECUTORS = ("local", "ray", "slurm")


def make_executor(name: str, *, jobs: int, threads: int, study_dir: str | Path, options: dict[str, Any] | None = None):
    """The executor called ``name`` (``"local"`` gives None: the runner's own in-process or pool executor).

    Args:
        name: ``"local"``, ``"ray"`` or ``"slurm"``.
        jobs: packs at once (a local Ray instance gets ``jobs * threads`` CPUs; Slurm's array parallelism).
        threads: torch threads (CPUs) per pack.
        study_dir: the study's results folder (Slurm keeps its logs in ``<study_dir>/.submitit``).
        options: engine options: Ray ``address``, ``object_store_mb``, ``max_retries``, ``gpus``;
            Slurm ``partition``, ``time_min``, ``gpus``, ``mem_gb``, ``cluster``, ``extra`` (a dict of
            submitit parameters, e.g. ``{"slurm_account": "lab"}``).

    Example:
        >>> make_executor("local", jobs=2, threads=1, study_dir="results/s") is None
        True
    """
    options = dict(options or {})
    if name == "local":
        if options:
            raise ConfigError(f"executor 'local' takes no options, got {sorted(options)}; use executor='ray' or 'slurm'.")
        return None
    if name == "ray":
        from clamp.execution.executors.ray_executor import RayExecutor

        return RayExecutor(jobs=jobs, threads=threads, **options)
    if name == "slurm":
        from clamp.execution.executors.slurm_executor import SlurmExecutor

        return SlurmExecutor(folder=Path(study_dir) / ".submitit", jobs=jobs, threads=threads, **options)
    raise ConfigError(f"executor {name!r} is unknown; choose one of {list(EXECUTORS)}.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--executor`` and the Ray/Slurm options of ``clamp run``."""
    g = p.add_argument_group("executors (where packs run)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: this machine (default); ray: a Ray cluster (pip install 'clamp[ray]'); "
                        "slurm: a Slurm job array through submitit (pip install 'clamp[slurm]')")
    g.add_argument("--address", metavar="HOST:PORT", help="Ray: a running cluster's address (default: start a local Ray instance)")
    g.add_argument("--ray-object-store-mb", type=int, metavar="MB", help="Ray: object store of a local instance (default 200)")
    g.add_argument("--ray-retries", type=int, metavar="N", help="Ray: times a pack whose worker died is retried (default 2)")
    g.add_argument("--gpus", type=float, metavar="N", help="Ray/Slurm: GPUs per pack (default: 1 when Study.device is cuda, else 0)")
    g.add_argument("--slurm-partition", metavar="NAME", help="Slurm: partition")
    g.add_argument("--slurm-time", type=int, metavar="MIN", help="Slurm: time limit per job in minutes (default 240); "
                   "a job that reaches it is requeued and resumes from its runs' last checkpoint")
    g.add_argument("--slurm-mem-gb", type=float, metavar="GB", help="Slurm: memory per job")
    g.add_argument("--slurm-cluster", choices=("slurm", "local"),
                   help="submitit cluster (default: slurm when sbatch is found; local runs the array on this machine)")
    g.add_argument("--slurm-opt", action="append", metavar="KEY=VALUE",
                   help="Slurm: any other submitit parameter, e.g. slurm_account=lab or slurm_qos=high (repeatable)")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``options`` for :func:`make_executor` from parsed ``clamp run`` arguments; rejects misplaced flags."""
    given = {
        "ray": {"--address": ("address", args.address), "--ray-object-store-mb": ("object_store_mb", args.ray_object_store_mb),
                "--ray-retries": ("max_retries", args.ray_retries)},
        "slurm": {"--slurm-partition": ("partition", args.slurm_partition), "--slurm-time": ("time_min", args.slurm_time),
                  "--slurm-mem-gb": ("mem_gb", args.slurm_mem_gb), "--slurm-cluster": ("cluster", args.slurm_cluster),
                  "--slurm-opt": ("extra", _slurm_extra(args.slurm_opt))},
    }
    misplaced = sorted(flag for engine, flags in given.items() if engine != args.executor
                       for flag, (_, value) in flags.items() if value is not None)
    if args.gpus is not None and args.executor == "local":
        misplaced.append("--gpus")
    if misplaced:
        raise ConfigError(f"{', '.join(misplaced)} do(es) not apply to --executor {args.executor}; "
                          "drop them or choose the executor they belong to (--executor ray or slurm).")
    out = {key: value for key, value in given.get(args.executor, {}).values() if value is not None}
    if args.gpus is not None:
        out["gpus"] = args.gpus
    return out


def _slurm_extra(items: list[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    extra = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--slurm-opt {item!r}: expected KEY=VALUE, e.g. slurm_account=lab.")
        extra[key] = _parse(value)
    return extra


def _parse(value: str) -> Any:
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value
