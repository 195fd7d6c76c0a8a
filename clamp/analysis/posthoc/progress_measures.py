"""Progress measures: a clamp applied to checkpoints of an unclamped run, at evaluation only.

Why this file exists: during the loss plateau nothing seems to happen, yet the
subcircuits may be improving out of sight.  Clamping one subcircuit to its
ideal on a checkpoint (no training) and measuring the loss shows how good the
*remaining* subcircuits already are: with the match clamp (oracle induction
pattern on a layer-2 head's query row) the loss measures the copy subcircuit;
with the layer-1 clamp (ideal previous-token layer 1) it measures the match
and copy subcircuits together (docs/science.md §2, "Progress measures").
:func:`progress_measures` gives these losses for one model (one checkpoint).
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from clamp.analysis.posthoc.evaluate import evaluate
from clamp.tasks.batch import Batch
from clamp.interventions import Intervention, Knockout, PatternClamp, ideal_layer1, match_clamp
from clamp.model.transformer import Transformer

PROGRESS_COLUMNS = ["run", "clamp", "layer", "head", "loss", "acc"]


def knocked_out(base: Sequence[Any], layer: int, n_heads: int) -> set[int]:
    """Heads of ``layer`` whose values or outputs ``base`` zeroes throughout (they cannot do anything).

    Example:
        >>> from clamp.interventions import knockout_heads
        >>> sorted(knocked_out([knockout_heads(layer=1, keep=[0])], 1, 4))
        [1, 2, 3]
    """
    out: set[int] = set()
    sites = {f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.attn.hook_z"}
    for iv in base:
        if isinstance(iv, Knockout) and iv.site in sites and iv.method == "zero" and iv.positions is None:
            if iv.keep is not None:
                out |= {h for h in range(n_heads) if h not in iv.keep}
            elif iv.heads is not None:
                out |= set(iv.heads)
            else:
                out |= set(range(n_heads))
    return out


def progress_clamps(layer: int, heads: Sequence[int]) -> dict[tuple[str, int], list[Intervention]]:
    """The clamps measured: ``("layer1", -1)``, ``("match", h)`` per head and ``("match_all", -1)``.

    ``layer`` is the induction heads' layer (1 = Singh's layer 2); the layer-1
    clamp idealises everything below it.

    Example:
        >>> sorted(progress_clamps(1, [0, 2]))
        [('layer1', -1), ('match', 0), ('match', 2), ('match_all', -1)]
    """
    heads = sorted(int(h) for h in heads)
    out: dict[tuple[str, int], list[Intervention]] = {("layer1", -1): [ideal_layer1(layer=layer)]}
    for h in heads:
        out[("match", h)] = [match_clamp(layer=layer, head=h)]
    if len(heads) > 1:
        out[("match_all", -1)] = [PatternClamp(layer=layer, heads=tuple(heads), pattern="induction",
                                               name=f"induction_L{layer}_all")]
    else:
        out[("match_all", -1)] = list(out[("match", heads[0])]) if heads else []
    return out


def progress_measures(model: Transformer, batch: Batch, task: Any, *, layer: int, heads: Sequence[int] | None = None,
                      base: Sequence[Any] = (), seen: int = 0) -> pd.DataFrame:
    """Loss and accuracy of ``model`` with no clamp, the layer-1 clamp, and the match clamp (per head and on all).

    Args:
        model: the (packed) model, e.g. loaded from a checkpoint of an unclamped run; not modified.
        batch: the evaluation batch.
        task: the built few-shot task.
        layer: the induction heads' layer (1 = Singh's layer 2).
        heads: heads that get a match clamp (default: every head of ``layer`` that ``base`` does not knock out).
        base: interventions applied throughout (the arm's own, e.g. its knockouts); a clamp already
            in ``base`` (same name) is not measured again.
        seen: sequences seen, for interventions with windows.

    Returns:
        Long table ``run, clamp, layer, head, loss, acc``; ``clamp`` is ``"none"``, ``"layer1"``,
        ``"match"`` (``head`` = the clamped head) or ``"match_all"`` (every head in ``heads``);
        ``head`` is -1 where it does not apply.

    Example:
        >>> # progress_measures(model, batch, task, layer=1).query("clamp == 'match'")
    """
    if heads is None:
        dead = knocked_out(base, layer, model.cfg.n_heads)
        heads = [h for h in range(model.cfg.n_heads) if h not in dead]
    have = {iv.name for iv in base}
    conditions: list[tuple[str, int, list[Intervention]]] = [("none", -1, [])]
    for (clamp, h), ivs in progress_clamps(layer, heads).items():
        if ivs and not any(iv.name in have for iv in ivs):
            conditions.append((clamp, h, ivs))
    rows = []
    for clamp, h, ivs in conditions:
        ev = evaluate(model, batch, task, [*base, *ivs], seen=seen)
        for r in range(model.n_runs):
            rows.append((r, clamp, layer, h, float(ev.loss[r]), float(ev.acc[r])))
    return pd.DataFrame(rows, columns=PROGRESS_COLUMNS)
