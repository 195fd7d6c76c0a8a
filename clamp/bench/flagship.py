"""The flagship shape the benchmarks time: the subcircuit study's match arm, in each mode.

Why this file exists: the throughput benchmark and the foreign-model benchmark time the same
arms (the flagship's seven-of-eight layer-2 knockout with the match clamp) built the same way.
"""

from __future__ import annotations

from typing import Callable


from clamp.bench.plain import plain_step
from clamp.model.config import ModelConfig
from clamp.tasks import FewShotConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer

BATCH = 32
STUDY_PACKING = 5  # the flagship study packs an arm's five seeds


def flagship_interventions() -> list:
    """The ``match`` arm's interventions: one active layer-2 head, its query row clamped to the oracle pattern."""
    from clamp.interventions import knockout_heads, match_clamp

    return [knockout_heads(layer=1, keep=[0]), match_clamp(layer=1, head=0)]


def trainer_for(mode: str, n_runs: int, task_cfg: FewShotConfig, **train: object) -> Trainer:
    """A harness trainer of the flagship model in ``mode`` (harness, hook or nnsight)."""
    factory = None
    if mode in ("hook", "nnsight"):
        from clamp.interventions import make_intervener

        factory = make_intervener(flagship_interventions(), task_cfg.build(), backend="hooks" if mode == "hook" else "nnsight")
    cfg = TrainConfig(**{"n_sequences": 10**9, "eval_every": 10**9, **train})
    return Trainer(ModelConfig(), task_cfg, cfg, seeds=list(range(n_runs)), intervener_factory=factory)


def make_step(mode: str, n_runs: int, task_cfg: FewShotConfig) -> Callable[[], None]:
    """One training step of ``mode`` (for ``plain``: of one run; the caller scales by R)."""
    if mode == "plain":
        return plain_step(task_cfg)
    return trainer_for(mode, n_runs, task_cfg).train_step


# --------------------------------------------------------------------------- FLOPs and peak


__all__ = ["BATCH", "STUDY_PACKING", "flagship_interventions", "make_step", "trainer_for"]
