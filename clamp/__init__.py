"""clamp: causal interventions on transformers while induction heads form.

``import clamp`` is the public API, so a study file needs one import line::

    import clamp

    model = clamp.ModelConfig(n_layers=2, n_heads=4, d_model=32)
    task = clamp.FewShotConfig(n_classes=50, d_in=64)
    STUDY = clamp.Study(name="demo", seeds=[0, 1, 2], n_sequences=30_000, eval_every=500, arms=[
        clamp.Arm(name="control", model=model, task=task, lr=1e-3,
                  interventions=[clamp.knockout_heads(layer=1, keep=[0])]),
    ])

The data path, one package per stage: :mod:`clamp.study` (declare) →
:mod:`clamp.execution` (run, resume, store) → :mod:`clamp.training` (train with
:mod:`clamp.interventions` on :mod:`clamp.model` and :mod:`clamp.tasks`) →
:mod:`clamp.analysis` (phase times, statistics, report).

Names are resolved lazily (PEP 562), so ``import clamp`` and ``clamp --help``
do not import torch or nnsight until a name that needs them is used.
"""

from __future__ import annotations

import importlib
import importlib.metadata as _metadata
from typing import Any

try:  # one source: the installed distribution's version (pyproject.toml)
    __version__ = _metadata.version("clamp")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # declaring a study
    "Study": "clamp.study.design", "Arm": "clamp.study.design", "Dense": "clamp.study.design",
    "PhaseRule": "clamp.phase", "StopAfterPhase": "clamp.phase", "load_study": "clamp.study.load", "StudyError": "clamp.study.design",
    "ConfigError": "clamp.errors",
    # model and tasks
    "ModelConfig": "clamp.model.config",
    # foreign models (clamp.model.foreign): a factory's module, Hugging Face presets, architecture adapters
    "ModelSpec": "clamp.model.foreign", "hf_gpt2": "clamp.model.foreign", "hf_llama": "clamp.model.foreign",
    "Adapter": "clamp.model.adapters", "attention": "clamp.model.adapters",
    "FewShotConfig": "clamp.tasks", "RepeatConfig": "clamp.tasks", "Batch": "clamp.tasks",
    "TextConfig": "clamp.tasks", "MarkovConfig": "clamp.tasks", "BurstyConfig": "clamp.tasks", "TaskBase": "clamp.tasks", "UserTaskConfig": "clamp.tasks", "EvalView": "clamp.tasks",
    # interventions: kinds, windows and constructors
    "Window": "clamp.interventions", "When": "clamp.interventions.when", "scan": "clamp.study.scan", "scan_heads": "clamp.study.scan",
    "scan_layers": "clamp.study.scan", "scan_subcircuits": "clamp.study.scan",
    "LN2": "clamp.phase", "Intervention": "clamp.interventions", "Clamp": "clamp.interventions",
    "PatternClamp": "clamp.interventions", "FunctionClamp": "clamp.interventions", "Knockout": "clamp.interventions",
    "IdealLayer1": "clamp.interventions", "PerfectCopy": "clamp.interventions",
    "PreservingAblation": "clamp.interventions", "GraftOutput": "clamp.interventions",
    "GraftParams": "clamp.interventions", "NnsightIntervention": "clamp.interventions", "HeadScale": "clamp.interventions",
    "ModuleEdit": "clamp.interventions", "Donor": "clamp.interventions.donors",
    "knockout_heads": "clamp.interventions", "match_clamp": "clamp.interventions",
    "perfect_copy": "clamp.interventions", "ideal_layer1": "clamp.interventions",
    "prev_token_pattern_clamp": "clamp.interventions", "uniform_pattern_clamp": "clamp.interventions",
    # running, and reading the results back (DataFrames, for notebooks)
    "run_study": "clamp.execution.runner",
    "open_results": "clamp.analysis.results", "Results": "clamp.analysis.results",
    "read_metrics": "clamp.analysis.results",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)  # every built-in intervention kind is listed (a test checks it)
    if module is None:
        raise AttributeError(f"module 'clamp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
