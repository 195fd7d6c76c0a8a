"""Phase-change statistics of clamping studies (issue 5).

Why this package exists: a clamping study's claim is causal and about timing
("with subcircuit X held perfect, the induction head forms N times sooner").
This package turns a study's stored metrics into that claim with honest
uncertainty: a phase-change time per run by several estimators, with runs that
never cross right-censored (:mod:`.phase`, :mod:`.survival`); comparisons of
arms with bootstrap CIs, exact rank, log-rank and paired tests and Holm
correction (:mod:`.compare`); factorial main effects and interactions
(:mod:`.factorial`); figures (:mod:`.plots`); sentences (:mod:`.report`); and
the study-level driver (:mod:`.analysis`, :mod:`.study`).

``clamp stats results/<study>`` recomputes everything without training.
"""

from __future__ import annotations

import argparse

from clamp.analysis.stats.pipeline import StudyStats, analyse_study, compare_arms, factorial_table
from clamp.analysis.stats.compare import Comparison, adjust_pvalues, compare_samples, min_paired_p, min_rank_p
from clamp.analysis.stats.factorial import Effect, additivity, factorial_effects
from clamp.analysis.stats.phase import (
    ESTIMATORS, PhaseEstimates, PhaseRule, PhaseTime, Plateau, SigmoidFit, change_point_time, estimate_phase,
    fit_sigmoid, plateau, steepest_descent_time, threshold_time,
)
from clamp.analysis.stats.runs import StudySpec, load_runs, load_study, phase_table
from clamp.analysis.stats.survival import km_curve, km_median, rmst

__all__ = [
    "ESTIMATORS", "Comparison", "Effect", "PhaseEstimates", "PhaseRule", "PhaseTime", "Plateau", "SigmoidFit",
    "StudySpec", "StudyStats", "additivity", "adjust_pvalues", "analyse_study", "change_point_time", "compare_arms",
    "compare_samples", "estimate_phase", "factorial_effects", "factorial_table", "fit_sigmoid", "km_curve",
    "km_median", "load_runs", "load_study", "min_paired_p", "min_rank_p", "phase_table", "plateau", "register",
    "rmst", "steepest_descent_time", "threshold_time",
]


def _stats_command(args: argparse.Namespace) -> int:
    analyse_study(args.study_dir, alpha=args.alpha, quiet=args.quiet, n_boot=args.n_boot, correction=args.correction)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``clamp stats <study_dir>`` to the command line.

    Example:
        >>> p = argparse.ArgumentParser(); sub = p.add_subparsers()
        >>> register(sub)
        >>> p.parse_args(["stats", "results/demo", "--alpha", "0.01"]).alpha
        0.01
    """
    p = subparsers.add_parser("stats", help="recompute phase-change statistics of a study from its stored metrics")
    p.add_argument("study_dir", help="the study folder, results/<study>")
    p.add_argument("--alpha", type=float, default=None, help="significance level (default: the study's, else 0.05)")
    p.add_argument("--n-boot", type=int, default=4000, help="bootstrap resamples per comparison")
    p.add_argument("--correction", choices=("holm", "bonferroni", "none"), default="holm",
                   help="multiple-comparison correction across a study's comparisons")
    p.add_argument("--quiet", action="store_true", help="do not print the summary")
    p.set_defaults(func=_stats_command)
