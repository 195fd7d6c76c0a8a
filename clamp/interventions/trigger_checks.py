"""Before training: every trigger (clamp.When) must name a metric the arm actually records.

Why this file exists: a trigger on a misspelt metric would never fire, and the
arm would silently train as its control -- the worst kind of wrong result.  The
names an arm records depend on its task, its model (one ``prev_token/L{l}H{h}``
per head), the study's user metrics and its interventions, so they are taken
from one evaluation of a fresh one-run model with tiny evaluation sets (cheap
for the models here), plus ``train_batch/loss`` (absent at the evaluation at
0).  The firing and trigger rows are not offered: they are computed after the
triggers are checked.  A held-out metric evaluated only every
``heldout_eval_every`` triggers only at the evaluations that have it.  Torch is
imported only when an arm has a trigger.
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

from clamp.errors import ConfigError
from clamp.names import FIRED_TOTAL, TRAIN_BATCH_LOSS, fired, is_fired, is_trigger
from clamp.interventions.when import When, is_triggered


def recorded_metrics(model_cfg: Any, task_cfg: Any, interventions: Sequence[Any], metrics: Sequence[Any] = (),
                     batch_size: int = 32) -> list[str]:
    """The metric names an arm writes to ``metrics.csv`` at an evaluation (sorted).

    Example:
        >>> from clamp.model.transformer import ModelConfig
        >>> from clamp.tasks import FewShotConfig
        >>> names = recorded_metrics(ModelConfig(n_layers=2, n_heads=2, d_model=8), FewShotConfig(n_classes=10, d_in=8), [])
        >>> "train/loss" in names and "prev_token/L0H1" in names and "train_batch/loss" in names
        True
    """
    from clamp.interventions.triggers import trigger_metric_names
    from clamp.training.trainer import TrainConfig, Trainer

    trainer = Trainer(model_cfg, task_cfg, TrainConfig(n_sequences=batch_size, batch_size=batch_size, eval_every=batch_size,
                                                       eval_size=8, heldout_eval_size=8), seeds=[0], metrics=metrics)
    names = set(trainer.evaluate())
    names.add(TRAIN_BATCH_LOSS)
    if interventions:
        names.add(FIRED_TOTAL)
        names.update(fired(iv.name) for iv in interventions)
        names.update(trigger_metric_names(interventions))
    return sorted(names)


def check_trigger_metrics(model_cfg: Any, task_cfg: Any, interventions: Sequence[Any], metrics: Sequence[Any] = (),
                          batch_size: int = 32) -> None:
    """Raise a :class:`ConfigError` naming every trigger on a metric the arm does not record, listing those it does."""
    whens = [(iv.name, end, getattr(w, end)) for iv in interventions for w in iv.windows if is_triggered(w)
             for end in ("start", "stop") if isinstance(getattr(w, end), When)]
    if not whens:
        return
    # fired/..., interventions/fired and trigger/... rows are computed after the triggers are checked at an
    # evaluation, so a trigger on them would never see them: not offered
    names = [n for n in recorded_metrics(model_cfg, task_cfg, interventions, metrics, batch_size)
             if not is_fired(n) and not is_trigger(n)]
    bad = []
    for iv_name, end, when in whens:
        if when.metric not in names:
            close = difflib.get_close_matches(when.metric, names, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            bad.append(f"{iv_name!r}: its window {end} triggers on {when.metric!r}, which this arm does not record{hint}")
    if bad:
        raise ConfigError("triggers on unknown metrics:\n" + "\n".join(f"  - {b}" for b in bad)
                          + f"\n  the metrics this arm records at every evaluation: {', '.join(names)}")


def check_arm_triggers(study: Any, arm: Any) -> None:
    """:func:`check_trigger_metrics` for one arm of a study (called by study validation)."""
    if not any(is_triggered(w) for iv in arm.interventions for w in getattr(iv, "windows", ())):
        return
    check_trigger_metrics(arm.model, arm.task, arm.interventions, study.metrics, arm.batch_size)


__all__ = ["recorded_metrics", "check_trigger_metrics", "check_arm_triggers"]
