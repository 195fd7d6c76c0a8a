"""The batch format every task produces.

(Outside ``clamp.tasks`` so that analysis modules can import it without
importing every task.)

Why this file exists: the model, the training loop and the interventions only
see :class:`Batch`; tasks differ in how they fill it (the task protocol itself is
in :mod:`clamp.tasks.base`).  A batch carries a leading run axis ``R`` so each run of a packed
model gets its own sequences.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

IGNORE = -100  # target value at positions that carry no loss


class Batch:
    """Sequences for R runs.

    Attributes:
        tokens: ``[R, B, T]`` long; discrete token (label) ids, 0 where the position holds an item.
        targets: ``[R, B, T]`` long; the class to predict at each position, ``IGNORE`` where no loss.
        item_mask: ``[R, B, T]`` bool, True where the position holds an item, or None.
        item_table: ``[V, d_in]`` float, the item vectors this batch draws from (shared by every
            run), or None.  Tasks whose items come from a fixed set give the set once and
            index it with ``item_ids``: the model then embeds V vectors instead of R*B*T.
        item_ids: ``[R, B, T]`` long, row of ``item_table`` at each item position (0 elsewhere).
        meta: task-specific tensors, each with leading ``[R, B]`` (e.g. ``correct_pos``).

    ``items`` (``[R, B, T, d_in]``, zeros at token positions) is the item vectors laid out
    per position: given directly, or looked up from the table when first read.

    Example:
        >>> table = torch.eye(3)
        >>> b = Batch(torch.zeros(1, 1, 2, dtype=torch.long), torch.zeros(1, 1, 2, dtype=torch.long),
        ...           item_mask=torch.tensor([[[True, False]]]), item_table=table,
        ...           item_ids=torch.tensor([[[2, 0]]]))
        >>> b.items[0, 0].tolist()
        [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """

    def __init__(self, tokens: Tensor, targets: Tensor, items: Tensor | None = None,
                 item_mask: Tensor | None = None, meta: dict[str, Tensor] | None = None, *,
                 item_table: Tensor | None = None, item_ids: Tensor | None = None) -> None:
        if (item_table is None) != (item_ids is None):
            raise ValueError("Batch needs item_table and item_ids together.")
        if item_table is not None and items is not None:
            raise ValueError("Batch takes items either directly or as item_table + item_ids, not both.")
        if item_table is not None and item_mask is None:
            raise ValueError("Batch with an item_table needs item_mask.")
        self.tokens = tokens
        self.targets = targets
        self.item_mask = item_mask
        self.item_table = item_table
        self.item_ids = item_ids
        self.meta = dict(meta) if meta else {}
        self._items = items

    @property
    def items(self) -> Tensor | None:
        if self._items is None and self.item_table is not None:
            self._items = self.item_table[self.item_ids] * self.item_mask[..., None]
        return self._items

    @property
    def n_runs(self) -> int:
        return self.tokens.shape[0]

    @property
    def size(self) -> int:
        return self.tokens.shape[1]

    def _replace(self, f) -> "Batch":
        """A batch with ``f`` applied to every per-sequence tensor (the item table is kept as is)."""
        mv = lambda x: None if x is None else f(x)  # noqa: E731
        if self.item_table is not None:
            return Batch(f(self.tokens), f(self.targets), None, mv(self.item_mask),
                         {k: f(v) for k, v in self.meta.items()}, item_table=self.item_table, item_ids=f(self.item_ids))
        return Batch(f(self.tokens), f(self.targets), mv(self._items), mv(self.item_mask),
                     {k: f(v) for k, v in self.meta.items()})

    @staticmethod
    def stack(batches: Sequence["Batch"]) -> "Batch":
        """Stack single-run batches (leading axis 1) along the run axis."""
        first = batches[0]
        cat = lambda xs: torch.cat(list(xs), dim=0)  # noqa: E731
        meta = {k: cat(b.meta[k] for b in batches) for k in first.meta}
        mask = None if first.item_mask is None else cat(b.item_mask for b in batches)
        tokens, targets = cat(b.tokens for b in batches), cat(b.targets for b in batches)
        table = first.item_table
        if table is not None and all(b.item_table is table for b in batches):
            return Batch(tokens, targets, None, mask, meta, item_table=table, item_ids=cat(b.item_ids for b in batches))
        items = None if first.items is None else cat(b.items for b in batches)
        return Batch(tokens, targets, items, mask, meta)

    def to(self, device: str | torch.device) -> "Batch":
        out = self._replace(lambda x: x.to(device))
        if out.item_table is not None:
            out.item_table = out.item_table.to(device)
        return out

    def sequences(self, start: int, stop: int) -> "Batch":
        """Sequences ``start:stop`` of every run (views)."""
        return self._replace(lambda x: x[:, start:stop])

    def run(self, r: int) -> "Batch":
        """The single-run batch of run ``r`` (leading axis kept, size 1)."""
        return self._replace(lambda x: x[r : r + 1])

    def __repr__(self) -> str:
        return f"Batch(runs={self.n_runs}, size={self.size}, positions={self.tokens.shape[2]})"

