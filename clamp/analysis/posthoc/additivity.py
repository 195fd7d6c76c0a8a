"""Additivity of layer-2 heads: the loss as heads are added back, strongest first.

Why this file exists: if the layer-2 induction heads are roughly additive
(docs/science.md §2), the loss falls steadily as heads are restored one at a time
in order of induction strength, starting from all of them knocked out, and
reaches the full model's loss when the last one is back.  :func:`additivity`
traces that curve for one model and batch (per run, since each run ranks its
own heads).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from clamp.analysis.posthoc.evaluate import evaluate
from clamp.analysis.posthoc.heads import head_scores, strengths
from clamp.analysis.posthoc.redundancy import knock_out
from clamp.tasks.batch import Batch
from clamp.model.transformer import Transformer

ADDITIVITY_COLUMNS = ["run", "layer", "n_heads", "added_head", "added_strength", "heads_kept", "loss", "acc"]


def strongest_first(strength: Mapping[int, float]) -> list[int]:
    """Heads ordered by induction strength, strongest first (ties: lower index first).

    Example:
        >>> strongest_first({0: 0.1, 1: 0.7, 2: 0.7, 3: -0.2})
        [1, 2, 0, 3]
    """
    return sorted(strength, key=lambda h: (-strength[h], h))


def additivity(model: Transformer, batch: Batch, task: Any, *, layer: int, heads: Sequence[int] | None = None,
               base: Sequence[Any] = (), scores: pd.DataFrame | None = None, seen: int = 0) -> pd.DataFrame:
    """Loss and accuracy with the ``k`` strongest heads of ``layer`` kept and the rest knocked out, ``k = 0..H``.

    Args:
        model: the (packed) model; not modified.  Each run ranks its own heads.
        batch: the evaluation batch.
        task: the built task.
        layer: the layer whose heads are added back (1 = Singh's layer 2).
        heads: the heads taking part (default all).
        base: interventions applied throughout (the arm's own).
        scores: a :func:`clamp.analysis.posthoc.heads.head_scores` table for this model and batch (computed if None).
        seen: sequences seen, for interventions with windows.

    Returns:
        Long table ``run, layer, n_heads, added_head, added_strength, heads_kept, loss, acc``:
        one row per run and ``n_heads`` (0: all knocked out; the last: none knocked out,
        the full model).  ``heads_kept`` lists the kept heads as ``"2-0-5"`` in the order added.

    Example:
        >>> # additivity(model, batch, task, layer=1)["loss"]  # falls as heads come back
    """
    heads = list(range(model.cfg.n_heads)) if heads is None else sorted(int(h) for h in heads)
    if scores is None:
        scores = head_scores(model, batch, task, base, seen=seen)
    rows = []
    for r in range(model.n_runs):
        s = strengths(scores, layer, run=r)
        order = strongest_first({h: s.get(h, math.nan) for h in heads})
        for k in range(len(order) + 1):
            kept = order[:k]
            ev = evaluate(model, batch, task, [*base, *knock_out(layer, [h for h in heads if h not in kept])], seen=seen)
            added = order[k - 1] if k else -1
            rows.append((r, layer, k, added, s.get(added, math.nan) if k else math.nan, "-".join(map(str, kept)),
                         float(ev.loss[r]), float(ev.acc[r])))
    return pd.DataFrame(rows, columns=ADDITIVITY_COLUMNS)
