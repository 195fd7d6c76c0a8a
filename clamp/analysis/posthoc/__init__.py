"""Post-hoc analyses of trained runs: the full-model findings of Singh et al. (2024).

Why this package exists: some claims are tested not by training under a
clamp but by probing checkpoints afterwards (SCIENCE.md §2, "Further
findings"): layer-2 heads are redundant and roughly additive induction heads;
layer-1 heads act through layer-2 patterns (K-composition) or values
(V-composition); clamping a subcircuit on checkpoints of an unclamped run shows
hidden progress during the plateau.  Each analysis is a pure function of
(model, batch, interventions) in its own module; :mod:`.full_model` is the thin
layer that loads checkpoints and writes tidy CSVs and figures; ``clamp analyse
results/<study>`` runs it from the command line.

Modules: :mod:`.evaluate` (one intervened evaluation), :mod:`.heads` (induction
strength, previous-token score), :mod:`.redundancy`, :mod:`.additivity`,
:mod:`.composition`, :mod:`.progress`, :mod:`.plots`, :mod:`.full_model`.
"""

from __future__ import annotations

import argparse

from clamp.analysis.posthoc.additivity import additivity, strongest_first
from clamp.analysis.posthoc.composition import ablations, classify, classify_heads, composition
from clamp.analysis.posthoc.evaluate import Evaluation, evaluate
from clamp.analysis.posthoc.full_model import TABLES, analyse_full_model, analyse_run
from clamp.analysis.posthoc.heads import head_scores, strengths
from clamp.analysis.posthoc.progress import knocked_out, progress_clamps, progress_measures
from clamp.analysis.posthoc.redundancy import knock_out, redundancy, redundancy_summary, spearman

__all__ = [
    "TABLES", "Evaluation", "ablations", "additivity", "analyse_full_model", "analyse_run", "classify",
    "classify_heads", "composition", "evaluate", "head_scores", "knock_out", "knocked_out", "progress_clamps",
    "progress_measures", "redundancy", "redundancy_summary", "register", "spearman", "strengths", "strongest_first",
]


def _analyse_command(args: argparse.Namespace) -> int:
    analyse_full_model(args.study_dir, arm=args.arm, quiet=args.quiet, every_checkpoint=args.every_checkpoint,
                       method=args.method, device=args.device, plot=not args.no_plots)
    # The command, not the analyses, rebuilds the study's pages so that they link the new tables and
    # figures: the library function stays free of any call up into the report.
    from clamp.analysis.report import build_report

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
