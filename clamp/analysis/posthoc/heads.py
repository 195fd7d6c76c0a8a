"""Per-head scores of a model on a batch: induction strength and previous-token score.

Why this file exists: the full-model analyses rank and correlate layer-2 heads
by how much of an induction head each one is (Singh et al.'s induction
strength: attention from the query to the correct label minus to the
incorrect one), and the composition analysis labels layer-1 heads by their
previous-token score.  :func:`head_scores` computes both from one forward, in
a tidy long table; the arm's own interventions (e.g. its knockouts) can be
applied so the scores are those of the model as trained.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from clamp.analysis.posthoc.evaluate import evaluate
from clamp.tasks.batch import Batch
from clamp.tasks.measures import induction_strength, prev_token_score
from clamp.model.transformer import Transformer

HEAD_SCORE_COLUMNS = ["run", "layer", "head", "metric", "value"]


def head_scores(model: Transformer, batch: Batch, task: Any, base: Sequence[Any] = (), *, seen: int = 0) -> pd.DataFrame:
    """Previous-token score of every head and induction strength of every head in layers >= 1.

    Args:
        model: the (packed) model; not modified.
        batch: a few-shot batch (``meta`` has ``correct_pos`` and ``label_pos``).
        task: the built task.
        base: interventions applied throughout (the arm's own, e.g. knockouts).
        seen: sequences seen, for interventions with windows.

    Returns:
        Long table with columns ``run, layer, head, metric, value``; ``metric`` is
        ``"prev_token"`` (every layer) or ``"induction_strength"`` (layers >= 1);
        ``run`` indexes the model's run axis.

    Example:
        >>> # head_scores(model, batch, task).query("metric == 'induction_strength'")
    """
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    cache = evaluate(model, batch, task, base, cache_names=names, seen=seen).cache
    rows = []
    query = batch.tokens.shape[-1] - 1
    for layer, name in enumerate(names):
        pattern = cache[name]  # [R, B, H, T, T]
        scores = {"prev_token": prev_token_score(pattern)}
        if layer >= 1 and "correct_pos" in batch.meta:
            scores["induction_strength"] = induction_strength(pattern, query, batch.meta["correct_pos"], batch.meta["label_pos"])
        for metric, s in scores.items():  # s: [R, H]
            for r in range(s.shape[0]):
                for h in range(s.shape[1]):
                    rows.append((r, layer, h, metric, float(s[r, h])))
    return pd.DataFrame(rows, columns=HEAD_SCORE_COLUMNS)


def strengths(scores: pd.DataFrame, layer: int, run: int = 0) -> dict[int, float]:
    """``{head: induction strength}`` of ``layer`` for one run, from a :func:`head_scores` table.

    Example:
        >>> t = pd.DataFrame([(0, 1, 0, "induction_strength", 0.5)], columns=HEAD_SCORE_COLUMNS)
        >>> strengths(t, 1)
        {0: 0.5}
    """
    sel = scores[(scores["metric"] == "induction_strength") & (scores["layer"] == layer) & (scores["run"] == run)]
    return {int(h): float(v) for h, v in zip(sel["head"], sel["value"])}
