"""``clamp law``: a study's phase-change times fitted as a power law of tokens per step (B·C), per intervention group.

Why this file exists: a formation-law study (``studies/formation_law.py``) trains a grid of batch sizes and
context lengths; the claim is a regression across its arms, not a pairwise comparison.  This module reads
what ``clamp run`` stored -- the primary rule's decidable phase times (``phase_times.csv``, computed if
missing) and each arm's batch size and context length (``study.json``) -- converts phase times to tokens
(sequences × C), fits :func:`clamp.analysis.stats.law.fit_law` with one group per set of interventions
(arms without interventions are the reference), and writes::

    law.csv       one row per term (log constant, exponent, each group's changes), with intervals and p
    law_cells.csv one row per arm: B, C, B·C, runs, crossed, median phase time in sequences and tokens
    law.md        the fit in sentences and the cells as a table
    plots/law.png, .svg   N (tokens) against B·C on log axes, runs as points (censored: open triangles),
                  the fitted line per group and Aoyama et al.'s slope 0.5 through the fit's centre
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from clamp.analysis.stats.law import LawFit, fit_exponents, fit_law, law_words
from clamp.errors import ConfigError
from clamp.store import atomic_write_text, read_json


def arm_shape(arm: dict) -> tuple[int, int]:
    """``(B, C)``: an arm record's batch size and tokens per sequence.

    Example:
        >>> arm_shape({"train": {"batch_size": 16}, "model": {"n_ctx": 64}, "task": {}})
        (16, 64)
    """
    batch = (arm.get("train") or {}).get("batch_size")
    ctx = (arm.get("model") or {}).get("n_ctx") or (arm.get("task") or {}).get("n_ctx")
    if not batch or not ctx:
        raise ConfigError(f"arm {arm.get('name')!r}: study.json records no batch size or context length; "
                          "clamp law needs both (train.batch_size, model.n_ctx).")
    return int(batch), int(ctx)


def arm_group(arm: dict) -> str:
    """The arm's group for the fit: its interventions' names joined ('' for an arm without interventions)."""
    return "+".join(sorted(str(iv.get("name") or iv.get("kind")) for iv in arm.get("interventions") or []))


def law_tables(study_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """Per run: arm, seed, group, B, C, x = B·C, phase time in sequences and tokens, event (the primary rule's)."""
    root = Path(study_dir)
    study = read_json(root / "study.json")
    if not study:
        raise ConfigError(f"{root}: no study.json; give a folder written by `clamp run` (results/<study>).")
    path = root / "phase_times.csv"
    if not path.is_file():
        from clamp.analysis.stats.pipeline import compute_statistics

        compute_statistics(root, quiet=True, plots=False)
    phase = pd.read_csv(path)
    runs = phase[(phase["rule_index"] == 0) & (phase["estimator"] == "threshold") & phase["included"]]
    rows = []
    for arm in study["arms"]:
        batch, ctx = arm_shape(arm)
        for r in runs[runs["arm"] == arm["name"]].itertuples():
            rows.append({"arm": arm["name"], "seed": int(r.seed), "group": arm_group(arm), "B": batch, "C": ctx,
                         "x": batch * ctx, "sequences": float(r.time), "tokens": float(r.time) * ctx,
                         "event": bool(r.event)})
    return pd.DataFrame(rows), study


def cells_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: its shape, runs, how many crossed, the median phase time (Kaplan–Meier) in sequences and tokens."""
    from clamp.analysis.stats.survival import km_median

    out = []
    for arm, g in runs.groupby("arm", sort=False):
        med = km_median(g["sequences"], g["event"])
        out.append({"arm": arm, "group": g["group"].iloc[0] or "none", "B": int(g["B"].iloc[0]), "C": int(g["C"].iloc[0]),
                    "BC": int(g["x"].iloc[0]), "runs": len(g), "crossed": int(g["event"].sum()),
                    "median_sequences": med, "median_tokens": med * int(g["C"].iloc[0])})
    return pd.DataFrame(out)


def cell_exponent(cells: pd.DataFrame, level: float) -> tuple[float, float, float, int] | None:
    """``(slope, low, high, cells)``: log median tokens on log B·C across cells whose median was reached (t interval),
    or None with fewer than 3 such cells or one value of B·C.

    Example:
        >>> c = pd.DataFrame({"BC": [256, 1024, 4096], "median_tokens": [1.6e4, 3.2e4, 6.4e4]})
        >>> [round(v, 3) for v in cell_exponent(c, 0.95)[:1]]
        [0.5]
    """
    from scipy import stats

    ok = cells[np.isfinite(cells["median_tokens"].astype(float))]
    if len(ok) < 3 or ok["BC"].nunique() < 2:
        return None
    r = stats.linregress(np.log(ok["BC"].astype(float)), np.log(ok["median_tokens"].astype(float)))
    t = stats.t.ppf(0.5 + level / 2, len(ok) - 2)
    return float(r.slope), float(r.slope - t * r.stderr), float(r.slope + t * r.stderr), len(ok)


def plot_law(runs: pd.DataFrame, fit: LawFit, title: str):
    """N (tokens) against B·C, log axes: runs, fitted line per group, and the slope 0.5 through the fit's centre."""
    from matplotlib.figure import Figure

    from clamp.analysis.plots import arm_colours

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    groups = [""] + list(fit.groups)
    colours = arm_colours(["none" if g == "" else g for g in groups])
    xs = np.geomspace(runs["x"].min() / 1.3, runs["x"].max() * 1.3, 50)
    for g in groups:
        label = "no intervention" if g == "" else g
        colour = colours["none" if g == "" else g]
        mine = runs[runs["group"] == g]
        jitter = np.exp(np.random.default_rng(0).uniform(-0.04, 0.04, len(mine)))  # runs of one cell side by side
        for ev, marker in ((True, "o"), (False, "^")):
            sel = mine["event"] == ev
            if sel.any():
                ax.scatter(mine["x"][sel] * jitter[sel.to_numpy()], mine["tokens"][sel], s=22, marker=marker,
                           facecolors=colour if ev else "none", edgecolors=colour, alpha=0.8, zorder=3,
                           label=f"{label}: runs" + ("" if ev else " not crossed (censored)"))
        exp_ = fit.term("exponent").estimate + (fit.term(f"d_exponent:{g}").estimate if g else 0.0)
        ax.plot(xs, fit.predict(xs, g or None), color=colour, lw=2, label=f"{label}: fit, N ∝ (B·C)^{exp_:.2f}")
    c0 = math.exp(fit.centre)
    ax.plot(xs, math.exp(fit.term("log_constant").estimate) * (xs / c0) ** 0.5, color="0.4", ls="--", lw=1,
            label="slope 0.5 (Aoyama et al. 2025)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    grid = sorted(set(int(v) for v in runs["x"]))
    ax.set_xticks(grid, [f"{v:,}" for v in grid])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e3:,.0f}k" if v < 1e6 else f"{v / 1e6:g}M"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("tokens per step, B·C (sequences per batch × tokens per sequence)")
    ax.set_ylabel("phase-change time (tokens seen)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig


def law_report(study_dir: str | Path, *, level: float = 0.95, n_boot: int = 0, quiet: bool = False) -> LawFit:
    """Fit the study's law and write law.csv, law_cells.csv, law.md and plots/law.*; returns the fit."""
    root = Path(study_dir)
    runs, study = law_tables(root)
    if runs.empty:
        raise ConfigError(f"{root}: no finished run with a phase time under the primary rule; nothing to fit.")
    groups = [g or None for g in runs["group"]]
    fit = fit_law(runs["tokens"], runs["event"], runs["x"], groups=groups, cells=list(runs["arm"]), level=level,
                  n_boot=n_boot)
    cells = cells_table(runs)
    terms = pd.DataFrame([{"term": t.name, "estimate": t.estimate, "low": t.low, "high": t.high, "se": t.se, "p": t.p,
                           "null": t.null} for t in fit.terms])
    terms["level"], terms["sigma"], terms["centre_BC"], terms["method"] = fit.level, fit.sigma, math.exp(fit.centre), fit.method
    atomic_write_text(root / "law.csv", terms.to_csv(index=False))
    atomic_write_text(root / "law_cells.csv", cells.to_csv(index=False))
    rule = (study.get("phase") or {}) if isinstance(study.get("phase"), dict) else (study.get("phase") or [{}])[0]
    lines = [f"### Formation law: {study.get('name')}", "",
             f"Phase-change time: the primary rule ({rule.get('metric', '?')} {rule.get('direction', '')} "
             f"{rule.get('threshold', '?')}), in tokens = sequences seen × C; fit: {fit.method}.", ""]
    lines += [f"- {s}" for s in law_words(fit)]
    cell_fit = cell_exponent(cells[cells["group"] == "none"], level)
    if cell_fit is not None:
        slope, lo, hi, n_cells = cell_fit
        ex = fit.term("exponent")
        runs_say, cells_say = ex.low <= 0.5 <= ex.high, lo <= 0.5 <= hi
        verdict = ("both intervals include 0.5" if runs_say and cells_say else
                   "both exclude 0.5" if not (runs_say or cells_say) else
                   "one interval includes 0.5 and the other does not: these data do not settle whether it is 0.5")
        lines.append(f"- With the cells as the unit (a least-squares line through the {n_cells} cells' median phase "
                     f"times without interventions, which allows for cells departing from the law): exponent "
                     f"{slope:.2f} ({level * 100:.4g} % CI {lo:.2f}–{hi:.2f}, t interval); {verdict}.")
        terms.loc[len(terms)] = {"term": "cells:exponent", "estimate": slope, "low": lo, "high": hi, "se": float("nan"),
                                 "p": float("nan"), "null": 0.5, "level": level, "sigma": float("nan"),
                                 "centre_BC": float("nan"), "method": "least squares on cell medians"}
        atomic_write_text(root / "law.csv", terms.to_csv(index=False))
    ref = runs[runs["group"] == ""]
    if ref["B"].nunique() > 1 and ref["C"].nunique() > 1:
        (tb, tc), _ = fit_exponents(ref["tokens"], ref["event"], {"B": ref["B"], "C": ref["C"]}, level=level)
        # the same fit written as B·C and C: the C coefficient is the difference of the two exponents
        (_, diff), _ = fit_exponents(ref["tokens"], ref["event"], {"BC": ref["x"], "C": ref["C"]}, level=level)
        pct = f"{level * 100:.4g} % CI"
        gap = f"α_C − α_B = {diff.estimate:+.2f} ({pct} {diff.low:+.2f} to {diff.high:+.2f})"
        same = (f"{gap}: consistent with the product form (a function of B·C alone)" if diff.low <= 0 <= diff.high
                else f"{gap}: the law is not a function of B·C alone here")
        lines.append(f"- Batch and context apart (runs without interventions): N ∝ B^{tb.estimate:.2f} "
                     f"({pct} {tb.low:.2f}–{tb.high:.2f}) · C^{tc.estimate:.2f} ({pct} {tc.low:.2f}–{tc.high:.2f}); "
                     f"{same}.")
        for t in (tb, tc):
            terms.loc[len(terms)] = {"term": f"separate:{t.name}", "estimate": t.estimate, "low": t.low, "high": t.high,
                                     "se": t.se, "p": t.p, "null": 0.0, "level": level, "sigma": float("nan"),
                                     "centre_BC": float("nan"), "method": fit.method}
        atomic_write_text(root / "law.csv", terms.to_csv(index=False))
    lines += [f"- Note: {n}." for n in fit.notes]
    lines += ["", "| arm | B | C | B·C | runs crossed | median phase time (sequences) | (tokens) |", "|---|---|---|---|---|---|---|"]
    for c in cells.itertuples():
        med = "not reached" if not math.isfinite(c.median_sequences) else f"{c.median_sequences:,.0f}"
        tok = "—" if not math.isfinite(c.median_tokens) else f"{c.median_tokens:,.0f}"
        lines.append(f"| {c.arm} | {c.B} | {c.C} | {c.BC:,} | {c.crossed}/{c.runs} | {med} | {tok} |")
    md = "\n".join(lines) + "\n"
    atomic_write_text(root / "law.md", md)
    from clamp.analysis.plots import save_figure

    ex = fit.term("exponent")
    save_figure(plot_law(runs, fit, f"{study.get('name')}: phase-change time against tokens per step\n(fit: exponent "
                                    f"{ex.estimate:.2f}, {fit.level * 100:.4g} % CI {ex.low:.2f}–{ex.high:.2f})"),
                root / "plots" / "law")
    if not quiet:
        print(md, end="")
        print(f"wrote law.csv, law_cells.csv, law.md, plots/law.png in {root}")
    return fit


__all__ = ["arm_group", "arm_shape", "cell_exponent", "cells_table", "law_report", "law_tables", "plot_law"]
