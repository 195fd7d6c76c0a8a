"""Ranking the components of a scan by their effect on phase-change timing, and the layer x head heatmap.

Why this file exists: a scan (:func:`clamp.scan`) perturbs many components,
one arm each; the question is which of them delay or prevent the phase change,
with the multiple-comparison control that many components need.  Each scan
(arms named ``<prefix>__<component>``, see :mod:`clamp.study.scan`) is a family
of its own in ``stats.csv`` (``family`` = ``scan <prefix>``): its components
against the control, compared and corrected there (the study's correction, or
``clamp stats --correction``; ``bh`` for a false discovery rate over many
components).  This file only ranks those rows -- one p and one family per
comparison, everywhere: largest delay first (a component whose arm never
crosses ranks by the bound its interval supports), ties by p.

Writes ``scan_<prefix>.csv`` (one row per component, with ``rank``), a
``plots/scan_<prefix>_heatmap.png``/``.svg`` of log2(ratio) by layer x head for
components named ``L<l>H<h>`` (whole-layer components ``L<l>`` fill their row),
and returns the stats.md section listing the ranking and the figure.

"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clamp.analysis.stats.families import family_label

_HEAD = re.compile(r"L(\d+)H(\d+)")
_LAYER = re.compile(r"L(\d+)")
RANK_COLUMNS = ("rank", "component", "arm", "ratio", "ratio_low", "ratio_high", "ratio_level", "ratio_bound",
                "ratio_bound_kind", "median_arm", "median_reference", "crossed_arm", "n_arm", "n_reference", "p",
                "p_adjusted", "significant", "correction", "family", "family_size", "effect", "note")


def scan_groups(arm_names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """``{prefix: [(component, arm name), ...]}`` for every scan among ``arm_names``."""
    from clamp.study.scan import scan_arm

    out: dict[str, list[tuple[str, str]]] = {}
    for name in arm_names:
        parsed = scan_arm(name)
        if parsed:
            out.setdefault(parsed[0], []).append((parsed[1], name))
    return out


def rank_components(rows: pd.DataFrame) -> pd.DataFrame:
    """One scan's comparisons (its ``stats.csv`` rows: one family, headline rule and estimator), ranked.

    Largest delay first: by the time ratio, or, when it is not estimable (a median not reached), by the
    bound its interval supports; ties by p.  The p-values, their correction and ``significant`` are
    the family's own, unchanged.

    Returns:
        Columns :data:`RANK_COLUMNS`, ``component`` from the arm's name.
    """
    from clamp.study.scan import scan_arm

    if rows.empty:
        return pd.DataFrame(columns=list(RANK_COLUMNS))
    df = rows.copy()
    df["component"] = [scan_arm(a)[1] if scan_arm(a) else a for a in df["arm"]]  # type: ignore[index]
    df["effect"] = df["ratio"].where(np.isfinite(df["ratio"].astype(float)), df["ratio_bound"]).astype(float)
    key = pd.DataFrame({"e": -df["effect"].fillna(-np.inf), "p": df["p"].fillna(np.inf)}, index=df.index)
    df = df.loc[key.sort_values(["e", "p"], kind="stable").index].reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df[list(RANK_COLUMNS)]


def heatmap_cells(ranked: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.bool_], list[int], int]:
    """``(log2 effect [L, H], significant [L, H], layers, n_heads)`` for ``L<l>H<h>`` / ``L<l>`` components."""
    cells: dict[tuple[int, int | None], tuple[float, bool]] = {}
    for r in ranked.itertuples():
        m, ml = _HEAD.fullmatch(str(r.component)), _LAYER.fullmatch(str(r.component))
        v = float(r.effect) if r.effect is not None and np.isfinite(float(r.effect)) and float(r.effect) > 0 else math.nan
        if m:
            cells[(int(m.group(1)), int(m.group(2)))] = (math.log2(v) if v == v else math.nan, bool(r.significant))
        elif ml:
            cells[(int(ml.group(1)), None)] = (math.log2(v) if v == v else math.nan, bool(r.significant))
    if not cells:
        return np.zeros((0, 0)), np.zeros((0, 0), bool), [], 0
    layers = sorted({l for l, _ in cells})
    n_heads = max([h + 1 for _, h in cells if h is not None] or [1])
    val = np.full((len(layers), n_heads), np.nan)
    sig = np.zeros((len(layers), n_heads), bool)
    for (l, h), (v, s) in cells.items():
        cols = range(n_heads) if h is None else [h]
        for c in cols:
            val[layers.index(l), c], sig[layers.index(l), c] = v, s
    return val, sig, layers, n_heads


def plot_heatmap(ranked: pd.DataFrame, prefix: str, control: str) -> Any:
    """The layer x head heatmap of log2(time ratio vs control); '*' marks components significant after correction."""
    from matplotlib.figure import Figure

    val, sig, layers, H = heatmap_cells(ranked)
    bound = {"at least": "≥", "at most": "≤"}
    marks: dict[tuple[int, int | None], str] = {}
    for r in ranked.itertuples():  # a ratio that is only a bound (a median not reached) is shown as one
        m, ml = _HEAD.fullmatch(str(r.component)), _LAYER.fullmatch(str(r.component))
        kind = bound.get(r.ratio_bound_kind, "") if not np.isfinite(float(r.ratio)) else ""
        if m:
            marks[(int(m.group(1)), int(m.group(2)))] = kind
        elif ml:
            marks[(int(ml.group(1)), None)] = kind
    fig = Figure(figsize=(1.0 + 0.8 * max(H, 2), 1.2 + 0.7 * max(len(layers), 1)), layout="constrained")
    ax = fig.subplots()
    lim = max(1.0, float(np.nanmax(np.abs(val))) if np.isfinite(val).any() else 1.0)
    im = ax.imshow(val, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(val.shape[0]):
        for j in range(val.shape[1]):
            kind = marks.get((layers[i], j), marks.get((layers[i], None), ""))
            txt = "n/a" if not np.isfinite(val[i, j]) else f"{kind}×{2 ** val[i, j]:.2g}" + ("*" if sig[i, j] else "")
            ax.text(j, i, txt, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(H), [f"H{h}" for h in range(H)])
    ax.set_yticks(range(len(layers)), [f"L{l}" for l in layers])
    ax.set_title(f"scan {prefix}: phase-change time ratio vs {control}\n(≥ ≤: a bound, runs that did not cross; *: significant)",
                 fontsize=8)
    fig.colorbar(im, ax=ax, label="log2(time ratio)")
    return fig


def scan_reports(dest: Path, stats_df: pd.DataFrame, spec: Any, *, plots: bool = True) -> tuple[str, list[Path]]:
    """Rank every scan of the study from its family's stats rows, write its CSV (and heatmap); return the
    stats.md section and the written paths."""
    groups = scan_groups([a.name for a in spec.arms])
    if not groups or spec.control is None or stats_df.empty:
        return "", []
    lines, written = ["", "## Scans", ""], []
    rule = spec.rules[0]
    head = stats_df[stats_df["headline"]]
    for prefix in groups:
        family = f"scan {prefix}"
        ranked = rank_components(head[head["family"] == family])
        path = dest / f"scan_{prefix}.csv"
        ranked.to_csv(path, index=False)
        written.append(path)
        correction = str(ranked["correction"].iloc[0]) if len(ranked) else spec.correction
        level = float(ranked["ratio_level"].min()) if len(ranked) else 0.95
        lines.append(f"Scan `{prefix}` ({len(ranked)} components vs {spec.control}; {rule.describe()}; time ratio "
                     f"with its {level * 100:.4g} % CI; p {family_label(family, correction, len(ranked))}), "
                     "largest delay first:")
        lines.append("")
        for r in ranked.itertuples():
            if np.isfinite(r.ratio):
                hi = "unbounded" if np.isinf(r.ratio_high) else f"{r.ratio_high:.2f}"
                lo = "unbounded" if r.ratio_low == 0 else f"{r.ratio_low:.2f}"
                eff = f"×{r.ratio:.2f} " + ("(no ratio excluded)" if r.ratio_low == 0 and np.isinf(r.ratio_high)
                                            else f"({lo}–{hi})")
            elif np.isfinite(r.ratio_bound):
                eff = f"{r.ratio_bound_kind} ×{r.ratio_bound:.2f} (runs that did not cross)"
            else:
                eff = "not estimable"
            p = "p n/a" if not np.isfinite(r.p_adjusted) else f"adjusted p = {r.p_adjusted:.3g}"
            lines.append(f"{r.rank}. {r.component}: {eff}, {r.crossed_arm}/{r.n_arm} runs crossed, {p}"
                         + (" (significant)" if r.significant else "") + (f" — {r.note}" if r.note else ""))
        if plots and len(ranked):
            from clamp.analysis.stats.plots import save

            cells, _, _, _ = heatmap_cells(ranked)
            if cells.size:
                files = save(plot_heatmap(ranked, prefix, spec.control), dest / "plots" / f"scan_{prefix}_heatmap")
                written += files
                lines += ["", f"Heatmap: `plots/{files[0].name}` (log2 time ratio by layer × head; * significant)."]
        lines.append("")
    return "\n".join(lines), written


__all__ = ["RANK_COLUMNS", "scan_groups", "rank_components", "heatmap_cells", "plot_heatmap", "scan_reports"]
