"""One evaluation of a model on a fixed batch, with or without interventions.

Why this file exists: every post-hoc analysis asks the same question many
times -- "what are the loss and accuracy of this model on this batch if these
interventions are applied?" -- and must never get a silent no-op for an answer
(an intervention that silently does nothing is the worst bug here).  :func:`evaluate`
answers it: it builds the intervener for the interventions as :func:`clamp.interventions.make_intervener` does (validated,
once per distinct set), runs one forward without gradient, checks that every
active intervention fired, and leaves the model exactly as it found it
(nnsight's wrapper is removed again).  With no interventions the plain forward runs and
nnsight is not imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from clamp.tasks.batch import Batch
from clamp.tasks.measures import loss_and_accuracy
from clamp.names import FIRED_TOTAL
from clamp.model.transformer import Transformer


@dataclass(frozen=True)
class Evaluation:
    """Loss and accuracy per run (each ``[R]``), the requested activations, and how many interventions fired."""

    loss: Tensor
    acc: Tensor
    cache: dict[str, Tensor]
    fired: int


_VALIDATED: set[str] = set()  # (model config, task, interventions) already checked; validation builds a model


def _applier(model: Transformer, ivs: list, task: Any) -> Any:
    """``make_intervener(ivs, task)(model)``, validating each distinct (config, task, interventions) once."""
    from clamp.interventions import validate_interventions
    from clamp.interventions.apply import Applier

    key = json.dumps([model.cfg.to_dict(), repr(getattr(task, "cfg", task)), [iv.to_dict() for iv in ivs]],
                     sort_keys=True, default=str)
    if key not in _VALIDATED:
        validate_interventions(ivs, model.cfg, task, None)
        _VALIDATED.add(key)
    return Applier(model, ivs, task)


@torch.no_grad()
def evaluate(model: Transformer, batch: Batch, task: Any, interventions: Sequence[Any] = (), *,
             cache_names: Sequence[str] = (), seen: int = 0) -> Evaluation:
    """Loss and accuracy of ``model`` on ``batch`` with ``interventions`` applied (evaluation only).

    Args:
        model: a (packed) model; not modified.
        batch: ``[R, B, T]`` batch with the model's run count.
        task: the built task (reference sets, validation).
        interventions: interventions from :mod:`clamp.interventions` (or their dicts), applied together.
        cache_names: hook names whose activations (after the interventions) to return, detached.
        seen: sequences seen, for interventions with windows.

    Returns:
        An :class:`Evaluation`.

    Raises:
        RuntimeError: when an intervention active at ``seen`` did not edit any activation.

    Example:
        >>> from clamp.model.config import ModelConfig
        >>> from clamp.tasks import FewShotConfig
        >>> task = FewShotConfig(n_classes=10, d_in=8).build()
        >>> model = Transformer(ModelConfig(n_layers=2, n_heads=2, d_model=8).resolve(task.dims()), [0])
        >>> batch = task.sample(16, torch.Generator().manual_seed(0))
        >>> evaluate(model, batch, task).loss.shape
        torch.Size([1])
    """
    cache_names = list(cache_names)
    if not interventions:
        logits, cache = model.run_with_cache(batch, cache_names)
        fired = 0
    else:
        from clamp.interventions.registry import intervention_from_dict

        ivs = [intervention_from_dict(iv) if isinstance(iv, dict) else iv for iv in interventions]
        applier = _applier(model, ivs, task)
        try:
            logits, cache = applier.forward(batch, seen, cache_names, False)
            fired = int(applier.firing_metrics()[FIRED_TOTAL][0])
        finally:
            applier.unwrap()
        active = [iv.name for iv in ivs if iv.active(seen)]
        if fired != len(active):
            raise RuntimeError(f"only {fired} of the {len(active)} active interventions {active} edited an "
                               "activation; an analysis must not silently measure an unintervened model.")
    loss, acc = loss_and_accuracy(logits, batch.targets)
    return Evaluation(loss=loss.float().cpu(), acc=acc.float().cpu(), cache=cache, fired=fired)
