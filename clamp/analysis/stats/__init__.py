"""Phase-change statistics of clamping studies (issues 5, 12, 20).

Why this package exists: a clamping study's claim is causal and about timing
("with subcircuit X held perfect, the induction head forms N times sooner").
This package turns a study's stored metrics into that claim with honest
uncertainty: the phase rule and its one crossing function (:mod:`.rule`); a
phase-change time per run by several estimators, with runs that never cross
(or cross and relapse) right-censored (:mod:`.phase`, :mod:`.survival`);
comparisons of arms with bootstrap CIs, an exact rank test as the primary test,
the asymptotic log-rank as a secondary column, paired tests and Holm correction
(:mod:`.compare`); factorial effects (:mod:`.factorial`); figures
(:mod:`.plots`); sentences (:mod:`.sentences`); reading a study folder
(:mod:`.runs`) and the study-level driver (:mod:`.pipeline`).

What enters: ``results/<study>/`` (study.json, runs/*/seed*/metrics.csv).
What leaves: phase_times.csv, stats.csv, stats.md, plots/stats_* (or, for
``clamp stats --phase``, the same under ``stats_<rule>/``).

Names are resolved lazily so that :mod:`.rule` (which the study design
imports) loads without scipy, pandas or matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "PhaseRule": "rule", "Crossing": "rule", "crossing_time": "rule", "LN2": "rule", "THRESHOLD": "rule",
    "StudyStats": "pipeline", "compute_statistics": "pipeline", "compare_arms": "pipeline",
    "factorial_table": "pipeline",
    "Comparison": "compare", "adjust_pvalues": "compare", "compare_samples": "compare", "min_paired_p": "compare",
    "min_rank_p": "compare",
    "Effect": "factorial", "additivity": "factorial", "factorial_effects": "factorial",
    "ESTIMATORS": "phase", "PhaseEstimates": "phase", "PhaseTime": "phase", "Plateau": "phase",
    "SigmoidFit": "phase", "change_point_time": "phase", "estimate_phase": "phase", "fit_sigmoid": "phase",
    "plateau": "phase", "steepest_descent_time": "phase", "threshold_time": "phase",
    "StudySpec": "runs", "load_runs": "runs", "load_study": "runs", "phase_table": "runs",
    "km_curve": "survival", "km_median": "survival", "rmst": "survival",
}

__all__ = sorted(_EXPORTS) + ["register"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clamp.analysis.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"clamp.analysis.stats.{module}"), name)
    globals()[name] = value
    return value


def _stats_command(args: argparse.Namespace) -> int:
    from clamp.analysis.stats.pipeline import compute_statistics
    from clamp.phase import PhaseRule

    rules = None
    if args.phase:
        persist: int | str = 0
        if args.persist is not None:
            persist = "end" if args.persist == "end" else _int_arg(args.persist)
        rules = [PhaseRule.parse(p, persist=persist, outside_windows=args.outside_windows) for p in args.phase]
    elif args.persist is not None or args.outside_windows:
        from clamp.errors import ConfigError

        raise ConfigError("--persist and --outside-windows modify a rule given with --phase; "
                          "e.g. clamp stats results/x --phase 'train/loss<0.277' --persist end.")
    compute_statistics(args.study_dir, alpha=args.alpha, quiet=args.quiet, n_boot=args.n_boot,
                       correction=args.correction, phase=rules)
    return 0


def _int_arg(text: str) -> int:
    from clamp.errors import ConfigError

    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--persist {text!r} must be a number of sequences or 'end'.") from None


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
                   help="with --phase: the metric must stay past the threshold N sequences (or to the end)")
    p.add_argument("--outside-windows", action="store_true",
                   help="with --phase: ignore evaluations inside each arm's intervention windows")
    p.add_argument("--alpha", type=float, default=None, help="significance level (default: the study's, else 0.05)")
    p.add_argument("--n-boot", type=int, default=4000, help="bootstrap resamples per comparison")
    p.add_argument("--correction", choices=("holm", "bonferroni", "none"), default="holm",
                   help="multiple-comparison correction across a study's comparisons")
    p.add_argument("--quiet", action="store_true", help="do not print the summary")
    p.set_defaults(func=_stats_command)
