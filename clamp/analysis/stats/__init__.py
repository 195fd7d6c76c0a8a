"""Phase-change statistics of clamping studies.

Why this package exists: a clamping study's claim is causal and about timing
("with subcircuit X held perfect, the induction head forms N times sooner").
This package turns a study's stored metrics into that claim with honest
uncertainty: with the phase rule and its one crossing function (:mod:`clamp.phase`), a
phase-change time per run by several estimators, with runs that never cross
(or cross and relapse) right-censored (:mod:`.phase`, :mod:`.survival`);
comparisons of arms with bootstrap CIs, an exact rank test as the primary test,
the asymptotic log-rank as a secondary column, paired tests and Holm correction
(:mod:`.compare`); factorial effects (:mod:`.factorial`); figures
(:mod:`.plots`); sentences (:mod:`.sentences`); reading a study folder
(:mod:`.runs`), the study-level driver (:mod:`.pipeline`) and ``clamp stats`` (:mod:`.command`).

What enters: ``results/<study>/`` (study.json, runs/*/seed*/metrics.csv).
What leaves: phase_times.csv, stats.csv, stats.md, plots/stats_* (or, for
``clamp stats --phase``, the same under ``stats_<rule>/``).

Names are resolved lazily, so importing the package loads neither scipy, pandas nor matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "StudyStats": "pipeline", "compute_statistics": "pipeline", "compare_arms": "pipeline",
    "factorial_table": "pipeline",
    "Comparison": "compare", "adjust_pvalues": "compare", "compare_samples": "compare", "min_paired_p": "compare",
    "min_rank_p": "compare",
    "Effect": "factorial", "additivity": "factorial", "factorial_effects": "factorial",
    "ESTIMATORS": "phase", "PhaseEstimates": "phase", "PhaseTime": "phase", "Plateau": "phase",
    "SigmoidFit": "phase", "change_point_time": "phase", "estimate_phase": "phase", "fit_sigmoid": "phase",
    "plateau": "phase", "steepest_descent_time": "phase", "threshold_time": "phase",
    "StudySpec": "runs", "load_runs": "runs", "read_study_spec": "runs", "phase_table": "runs",
    "km_curve": "survival", "km_median": "survival", "rmst": "survival",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clamp.analysis.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"clamp.analysis.stats.{module}"), name)
    globals()[name] = value
    return value
