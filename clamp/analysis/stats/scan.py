"""Ranking the components of a scan by their effect on phase-change timing, and the layer x head heatmap.

Why this file exists: a scan (:func:`clamp.scan`) perturbs many components,
one arm each; the question is which of them delay or prevent the phase change,
with the multiple-comparison control that many components need.  For every
scan (arms named ``<prefix>__<component>``, see :mod:`clamp.study.scan`) each
component's arm is compared with the study's control by the same machinery as
``stats.csv`` (:func:`clamp.analysis.stats.compare.compare_samples`: ratio of
Kaplan-Meier medians with a bootstrap CI, censoring-aware exact rank test),
on the primary rule's threshold times; the p-values are then corrected over
the scan's components only (Holm by default, or Benjamini-Hochberg for a false
discovery rate), and the components ranked: largest delay first (a component
whose arm never crosses ranks by its censoring-aware bound), ties by p.

Writes ``scan_<prefix>.csv`` (one row per component, with ``rank``), a
``plots/scan_<prefix>_heatmap.png``/``.svg`` of log2(ratio) by layer x head for
components named ``L<l>H<h>`` (whole-layer components ``L<l>`` fill their row),
and returns the stats.md section listing the ranking and the figure.

Example:
    >>> bh([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.04, 0.04]
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from clamp.analysis.stats.compare import adjust_pvalues, compare_samples, too_few_runs
from clamp.errors import ConfigError

ScanCorrection = Literal["holm", "bh"]
_HEAD = re.compile(r"L(\d+)H(\d+)")
_LAYER = re.compile(r"L(\d+)")


def bh(p: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); NaN stays NaN, in input order."""
    arr = np.array(p, dtype=float).ravel()
    out = arr.copy()
    ok = np.flatnonzero(np.isfinite(arr))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(arr[ok], kind="stable")]
    scaled = arr[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out


def scan_groups(arm_names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """``{prefix: [(component, arm name), ...]}`` for every scan among ``arm_names``."""
    from clamp.study.scan import scan_arm

    out: dict[str, list[tuple[str, str]]] = {}
    for name in arm_names:
        parsed = scan_arm(name)
        if parsed:
            out.setdefault(parsed[0], []).append((parsed[1], name))
    return out


def rank_components(phase_times: pd.DataFrame, control: str, arms: list[tuple[str, str]], *,
                    correction: ScanCorrection = "holm", n_boot: int = 4000, confidence: float = 0.95,
                    alpha: float = 0.05, seed: int = 0, rule_index: int = 0) -> pd.DataFrame:
    """One row per component: its arm vs ``control`` (ratio, CI, p, adjusted p over the scan), ranked.

    Args:
        phase_times: the table of :func:`clamp.analysis.stats.runs.phase_table` (``included`` runs enter).
        control: the reference arm.
        arms: ``(component, arm name)`` pairs of one scan.
        correction: ``"holm"`` (family-wise) or ``"bh"`` (Benjamini-Hochberg, false discovery rate), over the scan.
        n_boot, confidence, seed: as in :func:`~clamp.analysis.stats.compare.compare_samples`.
        alpha: level for ``significant``.
        rule_index: which phase rule (0: the primary one).

    Returns:
        Columns ``rank, component, arm, ratio, ratio_low, ratio_high, ratio_bound, median_arm, median_reference,
        crossed_arm, n_arm, p, p_adjusted, significant, correction, family_size, note``.
    """
    if correction not in ("holm", "bh"):
        raise ConfigError(f"scan correction={correction!r} is unknown; choose 'holm' or 'bh'.")
    sel = phase_times[(phase_times["rule_index"] == rule_index) & (phase_times["estimator"] == "threshold")
                      & phase_times["included"]]
    b = sel[sel["arm"] == control]
    rows = []
    for comp, arm in arms:
        a = sel[sel["arm"] == arm]
        pairs = [(i, j) for i, s in enumerate(a["seed"]) for j, t in enumerate(b["seed"]) if s == t]
        c = compare_samples(a["time"], a["event"], b["time"], b["event"], arm=arm, reference=control, pairs=pairs,
                            n_boot=n_boot, confidence=confidence, seed=seed)
        rows.append({"component": comp, "arm": arm, "ratio": c.ratio, "ratio_low": c.ratio_low,
                     "ratio_high": c.ratio_high, "ratio_bound": c.ratio_bound, "ratio_bound_kind": c.ratio_bound_kind,
                     "median_arm": c.median_arm, "median_reference": c.median_reference, "crossed_arm": c.crossed_arm,
                     "n_arm": c.n_arm, "n_reference": c.n_reference, "p": c.p, "note": c.note})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    tested = [i for i, r in df.iterrows() if not too_few_runs(int(r["n_arm"]), int(r["n_reference"]))]
    adj = np.full(len(df), np.nan)
    if tested:
        p = df.loc[tested, "p"].to_numpy(float)
        adj[tested] = bh(p) if correction == "bh" else adjust_pvalues(p, "holm")
    df["p_adjusted"] = adj
    df["significant"] = df["p_adjusted"] < alpha
    df["correction"] = correction
    df["family_size"] = len(tested)
    # effect for ranking: the ratio, or its censoring-aware bound when the ratio is not finite
    effect = df["ratio"].where(np.isfinite(df["ratio"].astype(float)), df["ratio_bound"]).astype(float)
    df["effect"] = effect
    key = pd.DataFrame({"e": -effect.fillna(-np.inf), "p": df["p"].fillna(np.inf)})
    order = key.sort_values(["e", "p"], kind="stable").index
    df = df.loc[order].reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


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
    ax.set_title(f"scan {prefix}: phase-change time vs {control}\n(≥: a median not reached; *: significant)", fontsize=8)
    fig.colorbar(im, ax=ax, label="log2(time ratio)")
    return fig


def scan_reports(dest: Path, phase_times: pd.DataFrame, spec: Any, *, n_boot: int = 4000, confidence: float = 0.95,
                 alpha: float = 0.05, seed: int = 0, plots: bool = True,
                 correction: ScanCorrection = "holm") -> tuple[str, list[Path]]:
    """Rank every scan of the study, write its CSV (and heatmap); return the stats.md section and written paths."""
    groups = scan_groups([a.name for a in spec.arms])
    if not groups or spec.control is None:
        return "", []
    lines, written = ["", "## Scans", ""], []
    rule = spec.rules[0]
    for prefix, arms in groups.items():
        ranked = rank_components(phase_times, spec.control, arms, correction=correction, n_boot=n_boot,
                                 confidence=confidence, alpha=alpha, seed=seed)
        path = dest / f"scan_{prefix}.csv"
        ranked.to_csv(path, index=False)
        written.append(path)
        name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[correction]
        lines.append(f"Scan `{prefix}` ({len(arms)} components vs {spec.control}; {rule.describe()}; time ratio of "
                     f"medians with {confidence * 100:.0f} % CI, p corrected by {name} over the scan), "
                     f"largest delay first:")
        lines.append("")
        for r in ranked.itertuples():
            if np.isfinite(r.ratio):
                eff = f"×{r.ratio:.2f} ({r.ratio_low:.2f}–{r.ratio_high:.2f})"
            elif np.isfinite(r.ratio_bound):
                eff = f"{r.ratio_bound_kind} ×{r.ratio_bound:.2f} (a median not reached)"
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


__all__ = ["bh", "scan_groups", "rank_components", "heatmap_cells", "plot_heatmap", "scan_reports"]
