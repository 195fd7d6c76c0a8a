"""Causal interventions applied during training: clamps, knockouts, grafts, and the researcher's own.

Why this package exists: it turns an arm's list of interventions (data: one
class per kind, see :mod:`clamp.interventions.spec` and
:mod:`clamp.interventions.kinds`; common cases built by
:mod:`clamp.interventions.constructors`) into the intervener the trainer calls
at every step and evaluation.  Importing this package imports neither torch
nor nnsight (which patches torch globally); :func:`make_intervener` imports the
applier lazily, and validation imports torch when it runs.

Every built-in kind (every class in :mod:`clamp.interventions.kinds`) is
exported here by its class name, without a list to keep up to date.

Example:
    >>> from clamp.interventions import knockout_heads, match_clamp
    >>> arm = [knockout_heads(layer=1, keep=[0]), match_clamp(layer=1, head=0)]
    >>> [iv.name for iv in arm]
    ['knockout_L1_v_keep0', 'induction_L1H0']
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from clamp.interventions.constructors import (
    ideal_layer1, knockout_heads, match_clamp, perfect_copy, prev_token_pattern_clamp, replace_windows,
    uniform_pattern_clamp,
)
from clamp.interventions.registry import builtin_kinds, intervention_from_dict
from clamp.interventions.spec import KINDS, Intervention, Window

globals().update(builtin_kinds())  # Clamp, PatternClamp, ..., NnsightIntervention, and any kind added to kinds/

# What a user kind's compile() and check() work with (they import torch, so they load on first use).
_TORCH_SIDE = {"Compiled": "clamp.interventions.effects", "Op": "clamp.interventions.effects",
               "Context": "clamp.interventions.effects", "Probe": "clamp.interventions.probe"}


def __getattr__(name: str) -> Any:
    if name in _TORCH_SIDE:
        import importlib

        return getattr(importlib.import_module(_TORCH_SIDE[name]), name)
    raise AttributeError(f"module 'clamp.interventions' has no attribute {name!r}")


def validate_interventions(interventions: Sequence[Intervention | dict], model_cfg: Any, task: Any,
                           n_sequences: int | None, *, probe_changes: bool = True) -> None:
    """See :func:`clamp.interventions.probe.validate_interventions` (imported on first use: it needs torch)."""
    from clamp.interventions.probe import validate_interventions as validate

    validate(interventions, model_cfg, task, n_sequences, probe_changes=probe_changes)


def make_intervener(interventions: Sequence[Intervention | dict], task: Any,
                    backend: str = "nnsight") -> Callable[[Any], Any]:
    """A factory for ``Trainer(intervener_factory=...)``: called with the model, returns its intervener.

    ``backend="nnsight"`` (the default) applies the interventions in an nnsight trace;
    ``"hooks"`` applies the same edits with PyTorch forward hooks and never imports
    nnsight (for measuring the trace's cost; both train bit-identically).

    The interventions are checked against the model when the factory is called
    (everything but the run length, which :func:`validate_interventions` checks
    given ``n_sequences``, and the probe for no-ops, which study validation runs
    before training), so a bad arm fails before the first step.

    Example:
        >>> from clamp.model.config import ModelConfig
        >>> from clamp.tasks import FewShotConfig
        >>> from clamp.training.config import TrainConfig
        >>> from clamp.training.trainer import Trainer
        >>> task_cfg = FewShotConfig(n_classes=10, d_in=8)
        >>> t = Trainer(ModelConfig(n_layers=2, n_heads=2, d_model=8), task_cfg,
        ...             TrainConfig(n_sequences=64, eval_every=32, eval_size=16), seeds=[0],
        ...             intervener_factory=make_intervener([perfect_copy()], task_cfg.build()))
        >>> t.run(64, on_eval=lambda seen, m: None)
        >>> t.evaluate()["fired/perfect_copy_L1H0"].tolist()
        [1.0]
    """
    ivs = [intervention_from_dict(iv) if isinstance(iv, dict) else iv for iv in interventions]

    def factory(model: Any) -> Any:
        validate_interventions(ivs, model.cfg, task, None, probe_changes=False)
        from clamp.interventions.triggers import applier_class  # the applier; nnsight only when it is the backend

        return applier_class(ivs)(model, ivs, task, backend)

    return factory


__all__ = [
    "Intervention", "Window", "KINDS", "intervention_from_dict", "validate_interventions", "make_intervener",
    "Compiled", "Op", "Context", "Probe",
    *sorted(builtin_kinds()),
    "knockout_heads", "prev_token_pattern_clamp", "uniform_pattern_clamp", "match_clamp", "ideal_layer1",
    "perfect_copy", "replace_windows",
]
