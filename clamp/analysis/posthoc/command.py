"""``clamp analyse``: the post-hoc full-model analyses of a study's checkpoints, then its pages rebuilt.

Why this file exists: the command line of the post-hoc analyses, apart from the package's
``__init__`` (which is for users); the command, not the analyses, rebuilds the report, so the
library functions never call up into it.
"""

from __future__ import annotations

import argparse

from clamp.analysis.posthoc.full_model import analyse_full_model
from clamp.analysis.report import build_report


def _analyse_command(args: argparse.Namespace) -> int:
    analyse_full_model(args.study_dir, arm=args.arm, quiet=args.quiet, every_checkpoint=args.every_checkpoint,
                       method=args.method, device=args.device, plot=not args.no_plots)
    build_report(args.study_dir)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``clamp analyse <study_dir>`` to the command line.

    Example:
        >>> p = argparse.ArgumentParser(); sub = p.add_subparsers()
        >>> register(sub)
        >>> p.parse_args(["analyse", "results/demo", "--arm", "full"]).arm
        'full'
    """
    p = subparsers.add_parser(
        "analyse", help="post-hoc full-model analyses of a study's checkpoints (redundancy, additivity, K/V, progress)",
        description="Load every checkpoint of the chosen arm(s) and write head scores, redundancy, additivity, "
                    "K/V-composition and progress-measure tables and figures to <study_dir>/analyses/.")
    p.add_argument("study_dir", help="a results folder written by `clamp run`, e.g. results/singh2024_full_model")
    p.add_argument("--arm", default=None, help="the arm to analyse (default: every arm without interventions)")
    p.add_argument("--every-checkpoint", action="store_true",
                   help="run redundancy, additivity and composition at every checkpoint, not only the last")
    p.add_argument("--method", choices=("zero", "mean", "resample"), default="zero",
                   help="how layer-1 heads are ablated in the composition analysis (default: zero)")
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    p.add_argument("--no-plots", action="store_true", help="write the CSVs only")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_analyse_command)


__all__ = ["register"]
