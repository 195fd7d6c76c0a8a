"""Figures of a study's phase-change statistics, rebuilt from the phase_times table.

Why this file exists: three pictures carry the claim and its caveats — the
phase-change time of every run per arm against the control's band, the
Kaplan–Meier curves when some runs never crossed, and how well the estimators
agree.  Each function takes the tidy table and returns a matplotlib Figure
(no pyplot state, so it works headless and in tests); :func:`save` writes PNG
and SVG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clamp.phase import PhaseRule
from clamp.analysis.stats.survival import km_curve, km_median

_MARK = {"sigmoid_mid": "o", "sigmoid_onset": "v", "steepest": "s", "changepoint": "D"}


def _colours(arms: Sequence[str]) -> dict[str, tuple]:
    from clamp.analysis.plots import arm_colours  # the same colour per arm as every other figure

    return arm_colours(arms)


def _plain_log(ax, which: str) -> None:
    # Log axes with plain-text labels ("300k"): mathtext labels ($10^{5}$) cost seconds to lay out.
    from matplotlib.ticker import EngFormatter, LogLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_formatter(EngFormatter(sep=""))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(EngFormatter(sep=""))


def _select(phase_times: pd.DataFrame, rule: PhaseRule, estimator: str) -> pd.DataFrame:
    df = phase_times
    return df[(df["metric"] == rule.metric) & (df["estimator"] == estimator) & df["included"]]


def plot_phase_times(phase_times: pd.DataFrame, rule: PhaseRule, arms: Sequence[str], control: str | None,
                     *, estimator: str = "threshold") -> Figure:
    """Per-arm phase-change times (filled: crossed; open triangle: censored at that point), medians, control band.

    The grey band spans the control's runs (lowest to highest time, censored
    included) and the dashed line is its median (Kaplan–Meier when censored).

    Example:
        >>> df = pd.DataFrame({"arm": ["c", "c", "m"], "seed": [0, 1, 0], "metric": "train/loss", "estimator": "threshold",
        ...                    "included": True, "time": [3e5, 4e5, 3e4], "event": [True, False, True]})
        >>> plot_phase_times(df, PhaseRule(), ["c", "m"], "c").axes[0].get_ylabel()
        'phase-change time (sequences seen)'
    """
    df = _select(phase_times, rule, estimator)
    fig = Figure(figsize=(max(4.0, 1.1 * len(arms) + 2), 4.0))
    ax = fig.add_subplot()
    colours = _colours(arms)
    if control is not None and (df["arm"] == control).any():
        c = df[df["arm"] == control]
        ax.axhspan(c["time"].min(), c["time"].max(), color="0.85", zorder=0, label=f"{control}: range of runs")
        med = km_median(c["time"], c["event"])
        if np.isfinite(med):
            ax.axhline(med, color="0.4", ls="--", lw=1, zorder=1, label=f"{control}: median")
    rng = np.random.default_rng(0)
    for i, arm in enumerate(arms):
        a = df[df["arm"] == arm]
        if a.empty:
            continue
        jitter = rng.uniform(-0.15, 0.15, len(a))
        ev = a["event"].to_numpy(bool)
        ax.scatter(i + jitter[ev], a["time"][ev], color=colours[arm], s=28, zorder=3)
        ax.scatter(i + jitter[~ev], a["time"][~ev], facecolors="none", edgecolors=colours[arm], marker="^", s=40,
                   zorder=3)
        med = km_median(a["time"], a["event"])
        if np.isfinite(med):
            ax.plot([i - 0.3, i + 0.3], [med, med], color=colours[arm], lw=2.5, zorder=2)
    ax.scatter([], [], color="0.3", s=28, label="crossed")
    ax.scatter([], [], facecolors="none", edgecolors="0.3", marker="^", s=40, label="never crossed (censored)")
    ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right")
    _plain_log(ax, "y")
    ax.set_ylabel("phase-change time (sequences seen)")
    ax.set_title(f"Phase-change time per arm\n({rule.describe()}, {estimator} estimator; bars: medians)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_km(phase_times: pd.DataFrame, rule: PhaseRule, arms: Sequence[str], *, estimator: str = "threshold") -> Figure:
    """Kaplan–Meier curves: fraction of each arm's runs not yet crossed, vs sequences seen (+ marks censoring).

    Example:
        >>> df = pd.DataFrame({"arm": ["c", "c"], "seed": [0, 1], "metric": "train/loss", "estimator": "threshold",
        ...                    "included": True, "time": [3e5, 4e5], "event": [True, False]})
        >>> plot_km(df, PhaseRule(), ["c"]).axes[0].get_xlabel()
        'sequences seen'
    """
    df = _select(phase_times, rule, estimator)
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    colours = _colours(arms)
    for arm in arms:
        a = df[df["arm"] == arm]
        if a.empty:
            continue
        q, s = km_curve(a["time"], a["event"])
        ax.step(np.r_[0.0, q], np.r_[1.0, s], where="post", color=colours[arm],
                label=f"{arm} ({int(a['event'].sum())}/{len(a)} crossed)")
        cens = a[~a["event"].astype(bool)]["time"].to_numpy(float)
        if cens.size:
            ax.scatter(cens, np.interp(cens, np.r_[0.0, q], np.r_[1.0, s]), marker="+", color=colours[arm], s=60,
                       zorder=3)
    ax.set_xlabel("sequences seen")
    ax.set_ylabel("fraction of runs not yet crossed")
    ax.set_ylim(-0.03, 1.03)
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_title(f"Kaplan–Meier: runs still before the phase change\n({rule.describe()}; + = censored at last evaluation)",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_estimator_agreement(phase_times: pd.DataFrame, rule: PhaseRule, arms: Sequence[str]) -> Figure:
    """Each robustness estimator's time against the threshold time, per crossed run (diagonal: agreement).

    Example:
        >>> df = pd.DataFrame({"arm": "c", "seed": [0, 0], "metric": "train/loss", "estimator": ["threshold", "steepest"],
        ...                    "included": True, "time": [3e5, 2.9e5], "event": True})
        >>> len(plot_estimator_agreement(df, PhaseRule(), ["c"]).axes)
        1
    """
    df = phase_times[(phase_times["metric"] == rule.metric) & phase_times["included"] & phase_times["event"]]
    base = df[df["estimator"] == "threshold"].set_index(["arm", "seed"])["time"]
    fig = Figure(figsize=(5.0, 4.5))
    ax = fig.add_subplot()
    colours = _colours(arms)
    lo, hi = np.inf, -np.inf
    for est, marker in _MARK.items():
        other = df[df["estimator"] == est].set_index(["arm", "seed"])["time"]
        joined = pd.concat({"x": base, "y": other}, axis=1).dropna()
        joined = joined[(joined["x"] > 0) & (joined["y"] > 0)]
        if joined.empty:
            continue
        arm_of = joined.index.get_level_values("arm")
        ax.scatter(joined["x"], joined["y"], c=[colours.get(a, "k") for a in arm_of], marker=marker, s=26, alpha=0.8)
        ax.scatter([], [], color="0.3", marker=marker, label=est)
        lo, hi = min(lo, joined.min().min()), max(hi, joined.max().max())
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls="--", label="agreement")
        _plain_log(ax, "x")
        _plain_log(ax, "y")
    for arm in arms:
        ax.scatter([], [], color=colours[arm], marker="o", s=26, label=arm)
    ax.set_xlabel("threshold-rule time (sequences seen)")
    ax.set_ylabel("other estimator's time (sequences seen)")
    ax.set_title(f"Agreement of phase-change estimators\n({rule.describe()}, crossed runs)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` (the analysis side's one saver); returns the paths."""
    from clamp.analysis.plots import save_figure

    return save_figure(fig, stem)
