"""The task protocol: what any task -- built in, in a study file, or in a user package -- provides.

Why this file exists: the trainer, the runner and the statistics never look
inside a task.  A task is a frozen config (``build()``, ``to_dict()``) plus the
object ``build()`` returns, which gives

- **dimensions** (:meth:`Task.dims`): ``d_in`` (item vector size, 0 for token-only
  tasks), ``d_vocab`` (input tokens), ``d_out`` (output classes), ``n_ctx``;
- **per-run batch sampling** (:meth:`Task.sample_runs`): run ``r`` of the run axis
  draws with its own generator only, so a run's data never depends on the runs
  it is packed with (the trainer seeds one generator per run);
- **evaluation sets** (:attr:`Task.evaluators`): ``"train"`` (a fixed sample of
  the training distribution, the one phase rules read) and any held-out sets;
- **the metrics it records** (:meth:`Task.eval_metrics`), each a ``[R]`` tensor
  per evaluation, written to ``metrics.csv`` under the returned name;
- **its default phase rule** (:meth:`Task.default_phase_rule`), used when a
  study gives none.

A config class defined outside ``clamp.tasks`` is written to ``study.json`` and
``run.json`` as ``{"kind": "module:QualName", ...fields}`` and rebuilt from that
in worker processes and on resume: subclass :class:`UserTaskConfig` (a frozen
dataclass mixin that writes that ``kind``) and :class:`TaskBase` (defaults for
everything but ``dims`` and ``sample``)::

    @dataclass(frozen=True, kw_only=True)
    class CountTask(UserTaskConfig):
        vocab: int = 8
        def build(self): return CountSampler(self)

    class CountSampler(TaskBase):
        evaluators = ("train",)
        def __init__(self, cfg): self.cfg = cfg
        def dims(self): return {"d_in": 0, "d_vocab": self.cfg.vocab, "d_out": self.cfg.vocab, "n_ctx": 6}
        def sample(self, n, gen, evaluator="train"): ...  # a Batch with leading run axis 1
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from clamp.tasks.batch import IGNORE, Batch
from clamp.tasks.measures import add_head_scores, loss_and_accuracy, prev_token_score
from clamp.tasks.protocol import TaskConfig
from clamp.phase import PhaseRule


@dataclass(frozen=True)
class EvalView:
    """What a task's (and a user's) evaluation metrics see, for one evaluation set.

    Attributes:
        evaluator: the set's name (``"train"`` is the training distribution).
        batch: the set, ``[R, B, T]`` per tensor.
        logits: ``[R, B, T, C]``, detached.
        patterns: ``{layer: [R, B, H, T, T]}`` attention patterns, detached; empty for sets
            whose patterns the task does not ask for (see :attr:`Task.pattern_evaluators`).
        seen: sequences seen per run at this evaluation.
        model: the packed model (read its weights; do not modify them), or None.
    """

    evaluator: str
    batch: Batch
    logits: Tensor
    patterns: dict[int, Tensor]
    seen: int = 0
    model: Any = None


@runtime_checkable
class Task(Protocol):
    """What the training loop needs from a built task (see the module docstring)."""

    #: names of the evaluation sets; ``"train"`` is the training distribution.
    evaluators: tuple[str, ...]

    def dims(self) -> dict[str, int]:
        """Model sizes the task fixes: ``d_in``, ``d_vocab``, ``d_out``, ``n_ctx``."""

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        """``n`` sequences for one run (leading axis 1), drawn with ``gen``."""

    def sample_runs(self, n: int, gens: list[torch.Generator], evaluator: str = "train") -> Batch:
        """``n`` sequences for each run, run ``r`` drawn with ``gens[r]`` alone: same as stacking ``sample``."""

    def eval_metrics(self, view: EvalView) -> dict[str, Tensor]:
        """Metrics of one evaluation set, each ``[R]``, named as they appear in ``metrics.csv``."""

    def default_phase_rule(self) -> PhaseRule:
        """The rule that says when a run on this task has learned, used when the study gives none."""


def standard_metrics(view: EvalView) -> dict[str, Tensor]:
    """``{evaluator}/loss`` and ``{evaluator}/acc``, and ``prev_token/L{l}H{h}`` on ``train`` when patterns are given.

    The metrics every built-in task records; a task's :meth:`Task.eval_metrics` usually
    starts from these.

    Example:
        >>> b = Batch(torch.zeros(1, 1, 2, dtype=torch.long), torch.tensor([[[1, IGNORE]]]))
        >>> m = standard_metrics(EvalView("train", b, torch.tensor([[[[0.0, 9.0], [0.0, 0.0]]]]), {}))
        >>> sorted(m), m["train/acc"].tolist()
        (['train/acc', 'train/loss'], [1.0])
    """
    out: dict[str, Tensor] = {}
    out[f"{view.evaluator}/loss"], out[f"{view.evaluator}/acc"] = loss_and_accuracy(view.logits, view.batch.targets)
    for layer, pattern in (view.patterns.items() if view.evaluator == "train" else ()):
        add_head_scores(out, "prev_token", layer, prev_token_score(pattern))
    return out


class TaskBase(ABC):
    """Defaults for a task: stacking per-run samples, the standard metrics, a loss-threshold rule.

    Subclasses must set ``evaluators`` and define :meth:`dims` and :meth:`sample`.
    """

    evaluators: tuple[str, ...] = ("train",)
    #: the evaluation sets whose attention patterns are cached and handed to :meth:`eval_metrics`.
    pattern_evaluators: tuple[str, ...] = ("train",)

    @abstractmethod
    def dims(self) -> dict[str, int]: ...

    @abstractmethod
    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch: ...

    def sample_runs(self, n: int, gens: list[torch.Generator], evaluator: str = "train") -> Batch:
        return Batch.stack([self.sample(n, g, evaluator) for g in gens])

    def eval_metrics(self, view: EvalView) -> dict[str, Tensor]:
        return standard_metrics(view)

    def default_phase_rule(self) -> PhaseRule:
        return PhaseRule()


class UserTaskConfig:
    """Mixin for a task config defined outside the package: serialised by import path.

    Use on a frozen keyword-only dataclass; ``to_dict()`` gives
    ``{"kind": "module:QualName", **fields}`` and :func:`clamp.tasks.task_from_dict`
    imports the class back from ``kind`` (in worker processes and on resume).
    """

    def to_dict(self) -> dict:
        from clamp.importpath import import_path

        return {"kind": import_path(type(self)), **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        from clamp.errors import ConfigError

        d = {k: v for k, v in d.items() if k != "kind"}
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ConfigError(f"{cls.__name__} got unknown keys {sorted(set(d) - known)}; valid keys are {sorted(known)}.")
        return cls(**d)


__all__ = ["IGNORE", "Batch", "EvalView", "Task", "TaskBase", "TaskConfig", "UserTaskConfig", "standard_metrics"]
