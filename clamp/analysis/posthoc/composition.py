"""K- vs V-composition of layer-1 heads: pattern- vs value-preserving ablations.

Why this file exists: a layer-1 head can help the layer-2 induction heads in
two ways -- by shaping *where they attend* (K-composition: the previous-token
heads, whose output makes the label token's key carry the preceding item) or
by shaping *what they move* (V-composition).  Ablating the head while every
later layer keeps its clean attention patterns (a *pattern-preserving*
ablation) leaves only the value path (and the head's direct path to the
logits); keeping the clean values instead (*value-preserving*) leaves only the
pattern path.  The loss increase in each case says which path the head acts
through (docs/science.md §2).  Uses :class:`clamp.interventions.PreservingAblation`.

An arm's own interventions (``base``: knockouts, clamps) are applied in every
condition, the reference included; the clean pass of a preserving ablation
applies them too, so the preserved patterns / values are those of the arm's
model without the ablation.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import pandas as pd

from clamp.analysis.posthoc.evaluate import evaluate
from clamp.tasks.batch import Batch
from clamp.interventions import Knockout, PreservingAblation
from clamp.model.transformer import Transformer

COMPOSITION_COLUMNS = ["run", "layer", "head", "ablation", "loss", "acc", "delta_loss", "delta_acc"]
CLASS_STATS = ["delta_loss_full", "delta_loss_value_path", "delta_loss_pattern_path", "composition"]
ABLATIONS = ("full", "pattern_preserving", "value_preserving")
Method = Literal["zero", "mean", "resample"]


def ablations(layer: int, head: int, method: Method = "zero") -> dict[str, Any]:
    """The three ablations of one head: plain, pattern-preserving and value-preserving.

    Example:
        >>> sorted(ablations(0, 3))
        ['full', 'pattern_preserving', 'value_preserving']
    """
    tag = f"L{layer}H{head}"
    return {
        "full": Knockout(site=f"blocks.{layer}.attn.hook_z", heads=(head,), method=method, name=f"analysis_ablate_{tag}"),
        "pattern_preserving": PreservingAblation(layer=layer, heads=(head,), preserve="patterns", method=method,
                                                 name=f"analysis_ablate_{tag}_keep_patterns"),
        "value_preserving": PreservingAblation(layer=layer, heads=(head,), preserve="values", method=method,
                                               name=f"analysis_ablate_{tag}_keep_values"),
    }


def composition(model: Transformer, batch: Batch, task: Any, *, layer: int = 0, heads: Sequence[int] | None = None,
                method: Method = "zero", base: Sequence[Any] = (), seen: int = 0) -> pd.DataFrame:
    """Loss and accuracy with each head of ``layer`` ablated plainly, pattern-preserving and value-preserving.

    Args:
        model: the (packed) model; not modified.  Needs a layer after ``layer``.
        batch: the evaluation batch.
        task: the built task.
        layer: the layer whose heads are ablated (0 = Singh's layer 1).
        heads: the heads to ablate one at a time (default all).
        method: how the head's output is ablated (``zero``; ``mean``: batch mean; ``resample``).
        base: interventions applied in every condition (the arm's own), the reference included.
        seen: sequences seen, for interventions with windows (the ablations are always active).

    Returns:
        Long table ``run, layer, head, ablation, loss, acc, delta_loss, delta_acc``; ``ablation``
        is ``"none"`` (the model with ``base`` only; ``head`` is -1), ``"full"``, ``"pattern_preserving"``
        (later layers keep their clean patterns: the value path is ablated) or
        ``"value_preserving"`` (later layers keep their clean values: the pattern path is
        ablated); deltas are relative to the ``"none"`` row.

    Example:
        >>> # composition(model, batch, task, layer=0).query("ablation == 'value_preserving'")
    """
    heads = list(range(model.cfg.n_heads)) if heads is None else sorted(int(h) for h in heads)
    clean = evaluate(model, batch, task, base, seen=seen)
    rows = [(r, layer, -1, "none", float(clean.loss[r]), float(clean.acc[r]), 0.0, 0.0) for r in range(model.n_runs)]
    for h in heads:
        for name, iv in ablations(layer, h, method).items():
            ev = evaluate(model, batch, task, [*base, iv], seen=seen)
            for r in range(model.n_runs):
                rows.append((r, layer, h, name, float(ev.loss[r]), float(ev.acc[r]),
                             float(ev.loss[r] - clean.loss[r]), float(ev.acc[r] - clean.acc[r])))
    return pd.DataFrame(rows, columns=COMPOSITION_COLUMNS)


def classify(delta_value_path: float, delta_pattern_path: float, *, tol: float = 0.01, ratio: float = 2.0) -> str:
    """Label a head by the loss increase through each path.

    ``"K"`` when ablating only its pattern path (value-preserving ablation) hurts
    at least ``ratio`` times more than ablating only its value path
    (pattern-preserving ablation); ``"V"`` for the reverse; ``"both"`` when
    neither dominates; ``"none"`` when neither exceeds ``tol`` nats.

    Example:
        >>> classify(0.0, 0.4), classify(0.3, 0.01), classify(0.2, 0.25), classify(0.001, -0.002)
        ('K', 'V', 'both', 'none')
    """
    if math.isnan(delta_value_path) or math.isnan(delta_pattern_path):
        return "none"
    v, k = max(delta_value_path, 0.0), max(delta_pattern_path, 0.0)
    if max(v, k) <= tol:
        return "none"
    if k >= ratio * v:
        return "K"
    if v >= ratio * k:
        return "V"
    return "both"


def classify_heads(table: pd.DataFrame, *, tol: float = 0.01, ratio: float = 2.0) -> pd.DataFrame:
    """One row per head of a :func:`composition` table with its loss deltas and :func:`classify` label.

    Extra key columns (``arm``, ``seed``, ``sequences_seen``) are kept.

    Example:
        >>> t = pd.DataFrame({"run": 0, "layer": 0, "head": 0, "loss": 0.0, "acc": 0.0, "delta_acc": 0.0,
        ...     "ablation": ["full", "pattern_preserving", "value_preserving"], "delta_loss": [0.5, 0.0, 0.5]})
        >>> classify_heads(t)["composition"].tolist()
        ['K']
    """
    keys = [c for c in table.columns if c not in ("ablation", "loss", "acc", "delta_loss", "delta_acc")]
    sel = table[table["ablation"] != "none"]
    wide = sel.pivot_table(index=keys, columns="ablation", values="delta_loss", aggfunc="first").reset_index()
    for a in ABLATIONS:
        if a not in wide:
            wide[a] = math.nan
    wide = wide.rename(columns={"full": "delta_loss_full", "pattern_preserving": "delta_loss_value_path",
                                "value_preserving": "delta_loss_pattern_path"})
    wide["composition"] = [classify(v, k, tol=tol, ratio=ratio)
                           for v, k in zip(wide["delta_loss_value_path"], wide["delta_loss_pattern_path"])]
    wide.columns.name = None
    return wide[keys + CLASS_STATS]
