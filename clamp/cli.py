"""The ``clamp`` command line: ``run``, ``list``, ``report``, ``stats``, ``analyse``, ``train``, ``bench``.

Why this file exists: one entry point (console script and ``python -m clamp``)
whose subcommands live next to the code they drive; each module contributes a
``register(subparsers)`` function, so this file only wires them together.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Sequence


def _train_command(args: argparse.Namespace) -> int:
    from clamp.errors import ConfigError
    from clamp.study.checks import check_device
    from clamp.store import check_output_folder

    if args.eval_every > args.sequences:
        raise ConfigError(f"--eval-every {args.eval_every:,} is longer than the run (--sequences {args.sequences:,}); "
                          f"give --eval-every at most {args.sequences:,}.")
    check_device(args.device, "--device")
    if args.metrics:
        check_output_folder(Path(args.metrics).parent)
    from clamp.model.config import ModelConfig
    from clamp.tasks import FewShotConfig, RepeatConfig
    from clamp.training.config import TrainConfig
    from clamp.training.trainer import train

    task = FewShotConfig() if args.task == "fewshot" else RepeatConfig()
    model = ModelConfig(n_layers=args.layers, n_heads=args.heads, d_model=args.d_model)
    cfg = TrainConfig(n_sequences=args.sequences, lr=args.lr, batch_size=args.batch_size,
                      eval_every=args.eval_every, device=args.device)
    train(model, task, cfg, seeds=args.seeds, metrics_path=args.metrics, progress=not args.quiet)
    if args.metrics:
        print(f"metrics written to {args.metrics}")
    return 0


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model (R packed seeds) and write its metrics CSV")
    p.add_argument("--task", choices=("fewshot", "repeat"), default="fewshot")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed, packed on the run axis")
    p.add_argument("--sequences", type=int, default=100_000, help="training length in sequences seen")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=1_000, help="evaluate every this many sequences")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    p.add_argument("--metrics", default="metrics.csv", help="long-format CSV to write")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_train_command)


def _register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput benchmark: plain PyTorch loop vs harness vs hooks vs nnsight",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: __import__("clamp.bench", fromlist=["main"]).main(args.rest))


# Subcommands registered by other modules, with their one-line help, so that `clamp --help` (and any
# subcommand) imports only the module it needs: torch, nnsight, pandas and scipy are not imported
# to print help.  A subcommand missing here still works: every module is then imported.
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("clamp.execution.commands", "run (or resume) a study file and write results/<study>/"),
    "list": ("clamp.execution.commands", "list the study files in studies/"),
    "report": ("clamp.execution.commands", "rebuild summary, statistics, plots and report.md from stored CSVs (no training)"),
    "stats": ("clamp.analysis.stats.command", "recompute phase-change statistics of a study from its stored metrics"),
    "law": ("clamp.analysis.stats.command", "fit a study's phase-change times as a power law of tokens per step (B·C)"),
    "analyse": ("clamp.analysis.posthoc.command", "post-hoc full-model analyses of a study's checkpoints"),
}


def _register_module(mod_name: str):
    try:
        mod = __import__(mod_name, fromlist=["register"])
    except ModuleNotFoundError as e:
        if e.name != mod_name:
            raise
        return None
    return getattr(mod, "register", None)


def _registrars(command: str | None = None):
    """Register functions for the parser: the one module ``command`` needs (others as help-only stubs), or all."""
    yield _register_train
    yield _register_bench
    wanted = _COMMANDS[command][0] if command in _COMMANDS else None
    if command is not None and wanted is None and command not in ("train", "bench") and not command.startswith("-"):
        wanted = "*"  # an unknown or new subcommand: import every module, as before
    for mod_name in dict.fromkeys(m for m, _ in _COMMANDS.values()):
        if wanted in (mod_name, "*"):
            register = _register_module(mod_name)
            if register is not None:
                yield register
        else:
            def stubs(sub: argparse._SubParsersAction, mod_name: str = mod_name) -> None:
                for name, (m, help_text) in _COMMANDS.items():
                    if m == mod_name:
                        sub.add_parser(name, help=help_text, add_help=False)
            yield stubs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark parses its own options
        from clamp.bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="clamp", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"clamp {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    command = next((a for a in argv if not a.startswith("-")), None)
    for register in _registrars(command):
        register(sub)
    args = parser.parse_args(argv)
    from clamp.errors import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"clamp: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment, not the code: say which file and what to do, without a traceback
        print(f"clamp: error: {environment_message(e)}", file=sys.stderr)
        return 2


def environment_message(e: OSError) -> str:
    """One sentence for an operating-system error met while reading or writing results."""
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    what = os.strerror(e.errno) if e.errno else str(e)
    fix = {errno.ENOSPC: "free some disk space (or use --out on another disk) and rerun the same command: finished "
                         "runs are kept and interrupted ones resume from their last checkpoint",
           errno.EDQUOT: "free some of your disk quota and rerun the same command; finished runs are kept",
           errno.EROFS: "give a writable folder with --out",
           errno.EACCES: "give a folder you can write to with --out, or change its permissions",
           errno.EPERM: "give a folder you can write to with --out, or change its permissions",
           errno.ENOTDIR: "a path component is a file, not a folder; give another --out",
           errno.ENOENT: "check the path"}.get(e.errno, "check the path and rerun")
    return f"{what}{where}; {fix}."


def _version() -> str:
    from clamp import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
