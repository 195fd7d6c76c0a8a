"""Redundancy of layer-2 heads: knock one out, or keep one alone.

Why this file exists: Singh et al. found that many layer-2 heads become
induction heads of different strengths and that they are redundant: knocking
out any one leaves accuracy near 1, while keeping only one gives an accuracy
roughly monotone in that head's induction strength (docs/science.md §2, "Further
findings").  :func:`redundancy` measures both on a model and batch;
:func:`redundancy_summary` gives the Spearman correlation between keep-alone
performance and induction strength.  Heads are knocked out as in the
subcircuit study: their values are zeroed (``knockout_heads``), so their
output is exactly zero.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import pandas as pd

from clamp.analysis.posthoc.evaluate import evaluate
from clamp.analysis.posthoc.heads import head_scores
from clamp.tasks.batch import Batch
from clamp.interventions import Intervention, knockout_heads
from clamp.model.transformer import Transformer

REDUNDANCY_COLUMNS = ["run", "layer", "head", "condition", "induction_strength", "loss", "acc"]
SUMMARY_STATS = ["metric", "n_heads", "spearman_rho", "spearman_p", "full",
                 "knock_out_min", "knock_out_mean", "keep_alone_min", "keep_alone_max"]


def knock_out(layer: int, heads: Sequence[int]) -> list[Intervention]:
    """Interventions that zero the values of ``heads`` of ``layer`` (none for an empty list).

    Example:
        >>> [iv.name for iv in knock_out(1, [2, 0])], knock_out(1, [])
        (['analysis_knockout_L1_h0-2'], [])
    """
    heads = sorted(int(h) for h in heads)
    if not heads:
        return []
    return [knockout_heads(layer=layer, heads=heads, name=f"analysis_knockout_L{layer}_h{'-'.join(map(str, heads))}")]


def redundancy(model: Transformer, batch: Batch, task: Any, *, layer: int, heads: Sequence[int] | None = None,
               base: Sequence[Any] = (), scores: pd.DataFrame | None = None, seen: int = 0) -> pd.DataFrame:
    """Loss and accuracy with each head of ``layer`` knocked out alone, and with each kept alone.

    Args:
        model: the (packed) model; not modified.
        batch: the evaluation batch.
        task: the built task.
        layer: the layer whose heads are knocked out (1 = Singh's layer 2).
        heads: the heads taking part (default all); others stay as ``base`` leaves them.
        base: interventions applied in every condition (the arm's own).
        scores: a :func:`clamp.analysis.posthoc.heads.head_scores` table for this model and batch (computed if None).
        seen: sequences seen, for interventions with windows.

    Returns:
        Long table ``run, layer, head, condition, induction_strength, loss, acc`` with
        ``condition`` one of ``"full"`` (no knockout; ``head`` is -1), ``"knock_out"``
        (only ``head`` knocked out) and ``"keep_alone"`` (every other head of ``heads`` knocked out).

    Example:
        >>> # redundancy(model, batch, task, layer=1).query("condition == 'keep_alone'")
    """
    heads = list(range(model.cfg.n_heads)) if heads is None else sorted(int(h) for h in heads)
    if scores is None:
        scores = head_scores(model, batch, task, base, seen=seen)
    strength = scores[(scores["metric"] == "induction_strength") & (scores["layer"] == layer)]
    strength = {(int(r), int(h)): float(v) for r, h, v in zip(strength["run"], strength["head"], strength["value"])}
    conditions: list[tuple[str, int, list[Intervention]]] = [("full", -1, [])]
    for h in heads:
        conditions.append(("knock_out", h, knock_out(layer, [h])))
        conditions.append(("keep_alone", h, knock_out(layer, [g for g in heads if g != h])))
    rows = []
    for condition, h, ivs in conditions:
        ev = evaluate(model, batch, task, [*base, *ivs], seen=seen)
        for r in range(model.n_runs):
            rows.append((r, layer, h, condition, strength.get((r, h), math.nan), float(ev.loss[r]), float(ev.acc[r])))
    return pd.DataFrame(rows, columns=REDUNDANCY_COLUMNS)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its p-value; NaN when undefined (fewer than 3 points, or a constant).

    Example:
        >>> spearman([0.1, 0.5, 0.9], [0.2, 0.6, 0.7])
        (1.0, 0.0)
    """
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if not (math.isnan(a) or math.isnan(b))]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs])
    return float(res.statistic), float(res.pvalue)


def redundancy_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and metric (``acc``, ``loss``): the keep-alone Spearman correlation with induction strength and ranges.

    ``table`` is a :func:`redundancy` table (extra key columns such as ``arm``,
    ``seed`` and ``sequences_seen`` are kept and grouped by).  Expect
    ``knock_out_min`` near ``full`` (redundancy) and a positive ``spearman_rho``
    for accuracy (negative for loss).

    Example:
        >>> t = pd.DataFrame({"run": 0, "layer": 1, "head": [-1, 0, 1, 2, 0, 1, 2],
        ...     "condition": ["full"] + ["knock_out"] * 3 + ["keep_alone"] * 3,
        ...     "induction_strength": [float("nan"), .1, .5, .9, .1, .5, .9],
        ...     "loss": [.1, .1, .1, .1, .6, .4, .2], "acc": [1, 1, 1, 1, .6, .8, .9]})
        >>> s = redundancy_summary(t)
        >>> s.set_index("metric")["spearman_rho"].to_dict()
        {'acc': 1.0, 'loss': -1.0}
    """
    keys = [c for c in table.columns if c not in ("head", "condition", "induction_strength", "loss", "acc")]
    rows = []
    for key, g in table.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        full = g[g["condition"] == "full"]
        ko = g[g["condition"] == "knock_out"]
        ka = g[g["condition"] == "keep_alone"]
        for metric in ("acc", "loss"):
            rho, p = spearman(ka["induction_strength"].tolist(), ka[metric].tolist())
            rows.append((*key, metric, len(ka), rho, p,
                         float(full[metric].mean()) if len(full) else math.nan,
                         float(ko[metric].min()) if len(ko) else math.nan,
                         float(ko[metric].mean()) if len(ko) else math.nan,
                         float(ka[metric].min()) if len(ka) else math.nan,
                         float(ka[metric].max()) if len(ka) else math.nan))
    return pd.DataFrame(rows, columns=keys + SUMMARY_STATS)
