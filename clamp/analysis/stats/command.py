"""``clamp stats``: recompute a study's phase-change statistics from its stored metrics, optionally under other rules.

Why this file exists: the command line of the statistics, kept apart from the package's
``__init__`` (which is for users) and loaded only when the command runs.
"""

from __future__ import annotations

import argparse

from clamp.corrections import CORRECTIONS
from clamp.errors import ConfigError
from clamp.phase import PhaseRule


def _stats_command(args: argparse.Namespace) -> int:
    from clamp.analysis.stats.pipeline import compute_statistics  # pandas, scipy: only when the command runs

    rules = None
    if args.phase:
        persist: int | str | None = None  # the study's default span (three evaluation intervals)
        if args.persist is not None:
            persist = "end" if args.persist == "end" else _int_arg(args.persist)
        rules = [PhaseRule.parse(p, persist=persist, outside_windows=args.outside_windows) for p in args.phase]
    elif args.persist is not None or args.outside_windows:
        raise ConfigError("--persist and --outside-windows modify a rule given with --phase; "
                          "e.g. clamp stats results/x --phase 'train/loss<0.277' --persist end.")
    compute_statistics(args.study_dir, alpha=args.alpha, quiet=args.quiet, n_boot=args.n_boot,
                       correction=args.correction, phase=rules)
    return 0


def _int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--persist {text!r} must be a number of sequences or 'end'.") from None


def _law_command(args: argparse.Namespace) -> int:
    from clamp.analysis.stats.law_study import law_report  # pandas, scipy, matplotlib: only when the command runs

    if not 0 < args.level < 1:
        raise ConfigError(f"--level {args.level} must be between 0 and 1, e.g. 0.95.")
    law_report(args.study_dir, level=args.level, n_boot=args.n_boot, quiet=args.quiet)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``clamp stats <study_dir> [--phase 'METRIC<THRESHOLD']`` to the command line.

    Example:
        >>> p = argparse.ArgumentParser(); sub = p.add_subparsers()
        >>> register(sub)
        >>> a = p.parse_args(["stats", "results/demo", "--alpha", "0.01", "--phase", "train/loss<0.1"])
        >>> a.alpha, a.phase
        (0.01, ['train/loss<0.1'])
    """
    p = subparsers.add_parser("stats", help="recompute phase-change statistics of a study from its stored metrics")
    p.add_argument("study_dir", help="the study folder, results/<study>")
    p.add_argument("--phase", action="append", metavar="'METRIC<THRESHOLD'",
                   help="recompute under another phase rule ('METRIC<T' or 'METRIC>T'; repeat for several, the "
                        "first is primary) into stats_<rule>/, leaving the study's own statistics untouched")
    p.add_argument("--persist", default=None, metavar="N|end",
                   help="with --phase: the metric must stay past the threshold N sequences (default: the study's "
                        "span, three evaluation intervals), or 'end' (to the end of the run)")
    p.add_argument("--outside-windows", action="store_true",
                   help="with --phase: ignore evaluations inside each arm's intervention windows")
    p.add_argument("--alpha", type=float, default=None, help="significance level (default: the study's, else 0.05)")
    p.add_argument("--n-boot", type=int, default=4000, help="bootstrap resamples per comparison")
    p.add_argument("--correction", choices=CORRECTIONS, default=None,
                   help="multiple-comparison correction within each family of comparisons (primary, secondary, "
                        "each scan); default: the study's (Holm unless it says otherwise); bh: false discovery rate")
    p.add_argument("--quiet", action="store_true", help="do not print the summary")
    p.set_defaults(func=_stats_command)
    q = subparsers.add_parser("law", help="fit a study's phase-change times as a power law of tokens per step (B·C)")
    q.add_argument("study_dir", help="the study folder, results/<study> (a grid of batch sizes and context lengths)")
    q.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    q.add_argument("--n-boot", type=int, default=0,
                   help="percentile bootstrap over runs within cells instead of Wald intervals (e.g. 2000)")
    q.add_argument("--quiet", action="store_true", help="do not print the fit")
    q.set_defaults(func=_law_command)


__all__ = ["register"]
