"""The batch format every task produces, and the task interface.

(Outside ``clamp.tasks`` so that analysis modules can import it without
importing every task.)

Why this file exists: the model, the training loop and the interventions only
see :class:`Batch`; tasks differ in how they fill it and in the extra metrics
they compute.  A batch carries a leading run axis ``R`` so each run of a packed
model gets its own sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch
from torch import Tensor

IGNORE = -100  # target value at positions that carry no loss


@dataclass
class Batch:
    """Sequences for R runs.

    Attributes:
        tokens: ``[R, B, T]`` long; discrete token (label) ids, 0 where the position holds an item.
        targets: ``[R, B, T]`` long; the class to predict at each position, ``IGNORE`` where no loss.
        items: ``[R, B, T, d_in]`` float item vectors (zeros at token positions), or None.
        item_mask: ``[R, B, T]`` bool, True where the position holds an item, or None.
        meta: task-specific tensors, each with leading ``[R, B]`` (e.g. ``correct_pos``).
    """

    tokens: Tensor
    targets: Tensor
    items: Tensor | None = None
    item_mask: Tensor | None = None
    meta: dict[str, Tensor] = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        return self.tokens.shape[0]

    @property
    def size(self) -> int:
        return self.tokens.shape[1]

    @staticmethod
    def stack(batches: Sequence["Batch"]) -> "Batch":
        """Stack single-run batches (leading axis 1) along the run axis."""
        first = batches[0]
        cat = lambda xs: torch.cat(list(xs), dim=0)  # noqa: E731
        return Batch(
            tokens=cat(b.tokens for b in batches),
            targets=cat(b.targets for b in batches),
            items=None if first.items is None else cat(b.items for b in batches),
            item_mask=None if first.item_mask is None else cat(b.item_mask for b in batches),
            meta={k: cat(b.meta[k] for b in batches) for k in first.meta},
        )

    def to(self, device: str | torch.device) -> "Batch":
        mv = lambda x: None if x is None else x.to(device)  # noqa: E731
        return Batch(mv(self.tokens), mv(self.targets), mv(self.items), mv(self.item_mask),
                     {k: v.to(device) for k, v in self.meta.items()})

    def run(self, r: int) -> "Batch":
        """The single-run batch of run ``r`` (leading axis kept, size 1)."""
        sl = lambda x: None if x is None else x[r : r + 1]  # noqa: E731
        return Batch(sl(self.tokens), sl(self.targets), sl(self.items), sl(self.item_mask),
                     {k: v[r : r + 1] for k, v in self.meta.items()})


class Task(Protocol):
    """What the training loop needs from a task."""

    #: names of the evaluation sets; ``"train"`` is the training distribution.
    evaluators: tuple[str, ...]

    def dims(self) -> dict[str, int]:
        """Model sizes the task fixes: ``d_in``, ``d_vocab``, ``d_out``, ``n_ctx``."""

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        """``n`` sequences for one run (leading axis 1), drawn with ``gen``."""

    def sample_runs(self, n: int, gens: list[torch.Generator], evaluator: str = "train") -> Batch:
        """``n`` sequences for each run, run ``r`` drawn with ``gens[r]`` alone: same as stacking ``sample``."""

    def extra_metrics(self, batch: Batch, logits: Tensor, patterns: dict[int, Tensor]) -> dict[str, Tensor]:
        """Task-specific metrics, each a ``[R]`` tensor; ``patterns[layer]`` is ``[R, B, H, T, T]``."""
