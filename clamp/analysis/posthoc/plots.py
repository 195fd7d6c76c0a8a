"""Figures of the full-model analyses, each rebuilt from its tidy CSV table.

Why this file exists: every analysis writes a long-format table; these
functions turn one table into one labelled figure (a matplotlib ``Figure``, no
pyplot state, so they run headless and in tests), and
:func:`clamp.analysis.figures.save_figure` writes it as PNG and SVG.  Times are in sequences seen; heads are named as in the
metrics (``L1H3`` = head 3 of ``blocks.1``, Singh's layer 2).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clamp.analysis.posthoc.redundancy import spearman
from clamp.phase import LN2, THRESHOLD

_CLAMP_STYLE = {"none": ("black", "-", "no clamp"), "layer1": ("tab:blue", "-", "layer-1 clamp (ideal previous-token layer 1)"),
                "match_all": ("tab:orange", "--", "match clamp on every layer-2 head"),
                "match": ("tab:red", "-", "match clamp on the strongest layer-2 head")}


def _grid(n: int, title: str, width: float = 4.2, height: float = 3.0) -> tuple[Figure, list]:
    cols = min(n, 3) or 1
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows + 0.6))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(n, 1))]
    fig.suptitle(title, fontsize=10)
    return fig, axes


def _seed_colours(seeds: list) -> dict:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(seeds)}


def plot_induction(scores: pd.DataFrame, arm: str, layer: int) -> Figure:
    """Induction strength of every head of ``layer`` against sequences seen, one panel per seed."""
    sel = scores[(scores["arm"] == arm) & (scores["metric"] == "induction_strength") & (scores["layer"] == layer)]
    seeds = sorted(sel["seed"].unique())
    fig, axes = _grid(len(seeds), f"Induction strength of each layer-2 head (blocks.{layer}) at every checkpoint — arm {arm!r}")
    for ax, seed in zip(axes, seeds):
        s = sel[sel["seed"] == seed]
        for h, g in s.groupby("head"):
            g = g.sort_values("sequences_seen")
            ax.plot(g["sequences_seen"], g["value"], marker=".", ms=3, lw=1, label=f"L{layer}H{h}")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"seed {seed}", fontsize=9)
        ax.set_xlabel("sequences seen")
        ax.set_ylabel("induction strength (correct − incorrect attention)")
        ax.set_ylim(-1.05, 1.05)
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def plot_redundancy(table: pd.DataFrame, arm: str) -> Figure:
    """Keep-alone and knock-one-out accuracy of each layer-2 head against its induction strength (all seeds)."""
    sel = table[table["arm"] == arm]
    seeds = sorted(sel["seed"].unique())
    colours = _seed_colours(seeds)
    seen = sorted(sel["sequences_seen"].unique())
    fig = Figure(figsize=(10, 4))
    ax_keep, ax_ko = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    last = sel.groupby("seed")["sequences_seen"].transform("max") == sel["sequences_seen"]
    sel = sel[last]
    for seed in seeds:
        s = sel[sel["seed"] == seed]
        full = s[s["condition"] == "full"]["acc"]
        for ax, cond in ((ax_keep, "keep_alone"), (ax_ko, "knock_out")):
            c = s[s["condition"] == cond]
            ax.scatter(c["induction_strength"], c["acc"], color=colours[seed], s=18, label=f"seed {seed}")
            if len(full):
                ax.axhline(float(full.iloc[0]), color=colours[seed], lw=0.6, ls=":")
    keep = sel[sel["condition"] == "keep_alone"]
    rho, p = spearman(keep["induction_strength"].tolist(), keep["acc"].tolist())
    ax_keep.set_title(f"only this head kept (others knocked out)\nSpearman ρ = {rho:.2f} (p = {p:.2g}, pooled)", fontsize=9)
    ax_ko.set_title("only this head knocked out\n(dotted: full model)", fontsize=9)
    for ax in (ax_keep, ax_ko):
        ax.set_xlabel("induction strength of the head")
        ax.set_ylabel("accuracy on the training evaluation set (fraction)")
        ax.axhline(0.5, color="grey", lw=0.5, ls="--")
        ax.set_ylim(-0.02, 1.02)
    ax_keep.legend(fontsize=7)
    at = f"{seen[-1]:,}" if len(seen) == 1 else "the final checkpoint"
    fig.suptitle(f"Redundancy of layer-2 heads at {at} sequences seen — arm {arm!r}", fontsize=10)
    fig.tight_layout()
    return fig


def _final_rows(table: pd.DataFrame, arm: str) -> pd.DataFrame:
    """The rows of ``arm`` at each seed's last checkpoint."""
    sel = table[table["arm"] == arm]
    return sel[sel.groupby("seed")["sequences_seen"].transform("max") == sel["sequences_seen"]]


def plot_additivity(table: pd.DataFrame, arm: str) -> Figure:
    """Loss against the number of layer-2 heads kept, added back strongest first (final checkpoint, per seed)."""
    sel = _final_rows(table, arm)
    seeds = sorted(sel["seed"].unique())
    colours = _seed_colours(seeds)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    for seed in seeds:
        s = sel[sel["seed"] == seed].sort_values("n_heads")
        ax.plot(s["n_heads"], s["loss"], marker="o", ms=4, color=colours[seed], label=f"seed {seed}")
    ax.axhline(LN2, color="grey", ls="--", lw=0.8, label="ln 2 (chance from context)")
    ax.axhline(THRESHOLD, color="grey", ls=":", lw=0.8, label="0.4 ln 2 (learned)")
    ax.set_xlabel("layer-2 heads kept (added back strongest first; the rest knocked out)")
    ax.set_ylabel("loss on the training evaluation set (nats)")
    ax.set_title(f"Additivity: loss as layer-2 heads are added back by induction strength\n"
                 f"arm {arm!r}, final checkpoint", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_composition(summary: pd.DataFrame, arm: str) -> Figure:
    """Loss increase through the pattern path against the value path, for every layer-1 head (final checkpoint)."""
    sel = _final_rows(summary, arm)
    seeds = sorted(sel["seed"].unique())
    colours = _seed_colours(seeds)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot(1, 1, 1)
    for seed in seeds:
        s = sel[sel["seed"] == seed]
        ax.scatter(s["delta_loss_pattern_path"], s["delta_loss_value_path"], color=colours[seed], s=20, label=f"seed {seed}")
        for _, row in s.iterrows():
            ax.annotate(f"L{row['layer']}H{row['head']}", (row["delta_loss_pattern_path"], row["delta_loss_value_path"]),
                        fontsize=6, xytext=(2, 2), textcoords="offset points")
    vals = np.concatenate([sel["delta_loss_pattern_path"].to_numpy(float), sel["delta_loss_value_path"].to_numpy(float), [0.0, 0.01]])
    lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.6, ls="--")
    ax.set_xlabel("Δ loss (nats), value-preserving ablation (pattern path only) → K-composition")
    ax.set_ylabel("Δ loss (nats), pattern-preserving ablation (value path only) → V-composition")
    ax.set_title(f"K- vs V-composition of layer-1 heads (blocks.0), final checkpoint — arm {arm!r}\n"
                 "below the diagonal: acts through layer-2 patterns; above: through values", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_progress(table: pd.DataFrame, scores: pd.DataFrame, arm: str, layer: int) -> Figure:
    """Loss with each clamp applied at evaluation against sequences seen, one panel per seed."""
    sel = table[table["arm"] == arm]
    seeds = sorted(sel["seed"].unique())
    fig, axes = _grid(len(seeds), f"Progress measures: loss with a clamp applied at evaluation to checkpoints "
                                  f"of the unclamped run — arm {arm!r}")
    for ax, seed in zip(axes, seeds):
        s = sel[sel["seed"] == seed]
        sc = scores[(scores["arm"] == arm) & (scores["seed"] == seed) & (scores["metric"] == "induction_strength")
                    & (scores["layer"] == layer)]
        strongest = None
        if len(sc):
            final = sc[sc["sequences_seen"] == sc["sequences_seen"].max()]
            match_heads = set(s[s["clamp"] == "match"]["head"])
            final = final[final["head"].isin(match_heads)]
            if len(final):
                strongest = int(final.sort_values("value", ascending=False)["head"].iloc[0])
        for clamp, (colour, ls, label) in _CLAMP_STYLE.items():
            c = s[s["clamp"] == clamp]
            if clamp == "match":
                c = c[c["head"] == strongest]
                label = f"match clamp on L{layer}H{strongest} (strongest at the end)"
            c = c.sort_values("sequences_seen")
            if len(c):
                ax.plot(c["sequences_seen"], c["loss"], color=colour, ls=ls, lw=1.2, marker=".", ms=3, label=label)
        ax.axhline(LN2, color="grey", ls="--", lw=0.6)
        ax.axhline(THRESHOLD, color="grey", ls=":", lw=0.6)
        ax.set_title(f"seed {seed}", fontsize=9)
        ax.set_xlabel("sequences seen")
        ax.set_ylabel("loss on the training evaluation set (nats)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return fig
