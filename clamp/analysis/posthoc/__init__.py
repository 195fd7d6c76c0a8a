"""Post-hoc analyses of trained runs: the full-model findings of Singh et al. (2024).

Why this package exists: some claims are tested not by training under a
clamp but by probing checkpoints afterwards (Singh et al. 2024, "further
findings"; docs/science.md): layer-2 heads are redundant and roughly additive induction heads;
layer-1 heads act through layer-2 patterns (K-composition) or values
(V-composition); clamping a subcircuit on checkpoints of an unclamped run shows
hidden progress during the plateau.  Each analysis is a pure function of
(model, batch, interventions) in its own module; :mod:`.full_model` is the thin
layer that loads checkpoints and writes tidy CSVs and figures; ``clamp analyse
results/<study>`` (:mod:`.command`) runs it from the command line.

Modules: :mod:`.evaluate` (one intervened evaluation), :mod:`.heads` (induction
strength, previous-token score), :mod:`.redundancy`, :mod:`.additivity`,
:mod:`.composition`, :mod:`.progress_measures`, :mod:`.plots`, :mod:`.full_model`.
"""

from __future__ import annotations

from clamp.analysis.posthoc.additivity import additivity, strongest_first
from clamp.analysis.posthoc.composition import ablations, classify, classify_heads, composition
from clamp.analysis.posthoc.evaluate import Evaluation, evaluate
from clamp.analysis.posthoc.full_model import TABLES, analyse_full_model, analyse_run
from clamp.analysis.posthoc.heads import head_scores, strengths
from clamp.analysis.posthoc.progress_measures import knocked_out, progress_clamps, progress_measures
from clamp.analysis.posthoc.redundancy import knock_out, redundancy, redundancy_summary, spearman

__all__ = [
    "TABLES", "Evaluation", "ablations", "additivity", "analyse_full_model", "analyse_run", "classify",
    "classify_heads", "composition", "evaluate", "head_scores", "knock_out", "knocked_out", "progress_clamps",
    "progress_measures", "redundancy", "redundancy_summary", "spearman", "strengths", "strongest_first",
]
