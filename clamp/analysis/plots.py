"""Every figure of a study, from the stored metrics: curves, held-out sets, head scores, attention patterns.

Why this file exists: plots are rebuilt from the CSVs by a command (``clamp report``), never by
hand, and they must read the same way in every figure: one colour and line style per arm (the
control solid), x axes in sequences seen, units on every axis, intervention windows shaded
(a fixed window as a span, a closed-loop window as one bar per run where its event put it).  The style helpers and the figure builders live together here; the
statistics' own figures (:mod:`clamp.analysis.stats.plots`) use the same colours.

Plots (PNG and SVG):

- ``curves_train_loss``: per arm, median and interquartile band across seeds, thin per-seed
  lines; the phase rule's threshold on its metric, and ln(pairs) "chance from context" on
  few-shot losses only (:func:`reference_lines`); with several arms besides the control, one
  panel per arm, each with the control;
- ``curves_train_acc``; ``heldout_loss`` / ``heldout_acc``: the held-out evaluators;
- ``heads_induction`` (``heads_prefix_match``, ``heads_prev_token``): per-head scores, one panel
  per arm, three to a row;
- ``attention_<arm>``: mean attention patterns of chosen heads at chosen checkpoints.
"""

from __future__ import annotations

import math

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

# Line styles of the arms other than the control (which alone is solid and drawn on top: see
# arm_styles), so two arms whose curves overlap stay distinguishable.
import pandas as pd

from clamp.analysis.metrics import run_events
from clamp.names import parse_head
from clamp.analysis.summary import phase_rules
from clamp.phase import arm_windows, has_triggered_windows, run_windows
from clamp.store import run_dir

_DASHES = ("--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)))


def arm_colours(arms: Sequence[str]) -> dict[str, Any]:
    """One colour per arm, in the study's arm order (tab10), the same in every figure of a study.

    Example:
        >>> c = arm_colours(["control", "clamp"])
        >>> c["control"] != c["clamp"]
        True
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {a: cmap(i % 10) for i, a in enumerate(arms)}


def arm_styles(arms: Sequence[str], control: str | None = None) -> dict[str, dict]:
    """Plot keywords per arm: its colour (:func:`arm_colours`), a line style, and a z-order.

    The control (or, without one, the first arm) is the only solid line, thicker
    and drawn above the other arms, so it stays visible when arms overlap; the
    other arms cycle through four dashed styles.

    Example:
        >>> s = arm_styles(["control", "a", "b"], control="control")
        >>> s["control"]["ls"], s["a"]["ls"], s["control"]["zorder"] > s["a"]["zorder"]
        ('-', '--', True)
    """
    colours = arm_colours(arms)
    solid = control if control in arms else (arms[0] if arms else None)  # without a control, the first arm
    out, k = {}, 0
    for a in arms:
        if a == solid:
            out[a] = {"color": colours[a], "ls": "-", "lw": 2.4, "zorder": 5}
        else:
            out[a] = {"color": colours[a], "ls": _DASHES[k % len(_DASHES)], "lw": 1.8, "zorder": 3}
            k += 1
    return out


def sequences_axis(ax: Any, label: str = "sequences seen") -> None:
    """Label the x axis in sequences seen, with compact ticks (20k, 1.5M)."""
    from matplotlib.ticker import FuncFormatter

    def fmt(v: float, _pos: int) -> str:
        for unit, div in (("M", 1e6), ("k", 1e3)):
            if abs(v) >= div:
                return f"{v / div:g}{unit}"
        return f"{v:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.set_xlabel(label)


def save_figure(fig: Any, stem: str | Path, *, dpi: int = 110, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically, close the figure, and return the paths.

    Works for a :class:`matplotlib.figure.Figure` made without pyplot and for a
    pyplot figure (which is also closed, so no figure accumulates).  Matplotlib's
    layout warnings are kept out of the console.

    Args:
        fig: the figure.
        stem: path without extension, e.g. ``results/s/plots/curves_train_loss``.
        dpi: resolution of the PNG.
        formats: extensions to write, PNG first (the report embeds the first).

    Returns:
        The written paths, in the order of ``formats``.

    Example:
        >>> from matplotlib.figure import Figure
        >>> import tempfile; d = tempfile.mkdtemp()
        >>> [p.suffix for p in save_figure(Figure(), Path(d) / "empty")]
        ['.png', '.svg']
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tight_layout / tick-locator chatter, not results
        for ext in formats:
            path = stem.parent / f"{stem.name}.{ext}"
            tmp = stem.parent / f".{stem.name}.{ext}.tmp"
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=ext, metadata=_metadata(ext))
            os.replace(tmp, path)
            paths.append(path)
    plt = sys.modules.get("matplotlib.pyplot")  # only a pyplot figure needs closing; never import pyplot here
    if plt is not None and getattr(fig, "number", None) is not None and plt.fignum_exists(fig.number):
        plt.close(fig)
    return paths


def _metadata(ext: str) -> dict:
    # No creation date or software version in the files: rebuilding a report gives identical bytes.
    if ext == "svg":
        return {"Date": None, "Creator": None}
    if ext == "png":
        return {"Software": None}
    return {}


def shade_windows(ax: Any, df: pd.DataFrame, study: dict, arms: Sequence[str], styles: dict[str, dict]) -> None:
    """Draw the intervention windows of ``arms`` on ``ax``, in each arm's colour.

    A fixed window is the same in every run: one shaded span across the panel.  A triggered
    (closed-loop) window is where each run's own event put it (:func:`clamp.phase.run_windows`):
    one bar per run along the bottom of the panel, so runs whose windows differ are told apart.
    An intervention on for the whole run is part of the arm, not a window, and is not shaded.
    """
    records = {a.get("name"): a for a in study.get("arms", []) if isinstance(a, dict)}
    row = 0
    for arm in arms:
        ivs = (records.get(arm) or {}).get("interventions") or []
        if not ivs:
            continue
        color = styles.get(arm, {}).get("color", "0.4")
        ends = df[df["arm"] == arm].groupby("seed")["sequences_seen"].max()  # each run's last evaluation
        if ends.empty:
            continue
        fixed = arm_windows(records[arm])
        for k, (a, b) in enumerate(fixed):
            ax.axvspan(a, min(b, float(ends.max())), color=color, alpha=0.10, lw=0, zorder=0,
                       label=f"{arm}: intervention window" if k == 0 else None)
        if not has_triggered_windows(ivs):
            continue
        labelled = False
        for seed in sorted(int(x) for x in ends.index):
            spans = [w for w in run_windows(ivs, run_events(df, arm, seed)) if w not in fixed]
            y = 0.02 + 0.03 * row
            row += 1
            for a, b in spans:
                ax.plot([a, min(b, float(ends[seed]))], [y, y], transform=ax.get_xaxis_transform(), color=color,
                        lw=3, solid_capstyle="butt", alpha=0.8, zorder=3,
                        label=None if labelled else f"{arm}: triggered window (one bar per run)")
                labelled = True


def _pyplot():
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax, wide: pd.DataFrame, style: dict, label: str, seeds: bool = True) -> None:
    """Median and interquartile band across the columns (seeds) of ``wide``; thin per-seed lines."""
    x = wide.index.to_numpy()
    color = style["color"]
    if seeds and wide.shape[1] > 1:
        for col in wide.columns:
            ax.plot(x, wide[col].to_numpy(), color=color, lw=0.6, alpha=0.35, ls=style.get("ls", "-"),
                    zorder=style.get("zorder", 2) - 1)
        label = f"{label} (median of {wide.shape[1]} seeds)"
    ax.plot(x, wide.median(axis=1, skipna=True).to_numpy(), label=label, **{"lw": 2, **style})
    if wide.shape[1] > 1:
        ax.fill_between(x, wide.quantile(0.25, axis=1).to_numpy(), wide.quantile(0.75, axis=1).to_numpy(),
                        color=color, alpha=0.15, lw=0, zorder=style.get("zorder", 2) - 2)


_GROUPS: list = []  # [(frame, {(arm, metric): rows})] for the frame last asked about


def _group(df: pd.DataFrame, arm: str, metric: str) -> pd.DataFrame:
    """The rows of ``df`` for one (arm, metric), from one groupby per frame (filtering a million-row
    frame by string equality for every curve was most of the report's time)."""
    if not _GROUPS or _GROUPS[0][0] is not df:
        _GROUPS[:] = [(df, {key: rows for key, rows in df.groupby(["arm", "metric"], sort=False)})]
    rows = _GROUPS[0][1].get((arm, metric))
    return rows if rows is not None else df.iloc[:0]


def _wide(df: pd.DataFrame, arm: str, metric: str) -> pd.DataFrame:
    d = _group(df, arm, metric)
    return d.pivot_table(index="sequences_seen", columns="seed", values="value", aggfunc="first").sort_index()


def _grid(n: int, *, cols: int = 3, width: float = 4.4, height: float = 3.4, sharey: bool = True):
    """``n`` panels wrapped into rows of at most ``cols``; the unused panels are hidden."""
    plt = _pyplot()
    ncols = max(1, min(n, cols))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.5), squeeze=False, sharey=sharey,
                             layout="constrained")  # titles and axis labels of stacked rows never overlap
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:max(n, 1)]


def reference_lines(study: dict, metric: str) -> list[tuple[float, str, str]]:
    """The horizontal reference lines that mean something for ``metric`` in this study: ``(y, style, label)``.

    - The phase rule's threshold, on the rule's own metric (every task: the study defines it).
    - Chance from context, ln(number of in-context labels), on the loss of the few-shot task only
      (when every arm uses it with the same number of pairs); repeated tokens have no such level.

    Example:
        >>> s = {"phase": {"metric": "train/loss", "threshold": 0.277, "direction": "below"},
        ...      "arms": [{"task": {"kind": "repeat"}}]}
        >>> [label for _, _, label in reference_lines(s, "train/loss")]
        ['phase rule: train/loss below 0.277']
    """
    lines = []
    for rule in phase_rules(study):
        if rule["metric"] == metric:
            lines.append((float(rule["threshold"]), "--", f"phase rule: {metric} {rule.get('direction', 'below')} "
                                                            f"{float(rule['threshold']):.3g}"))
    tasks = [a.get("task", {}) for a in study.get("arms", [])]
    pairs = {t.get("n_pairs", 2) for t in tasks}
    if metric.endswith("/loss") and tasks and all(t.get("kind") == "fewshot" for t in tasks) and len(pairs) == 1:
        n = pairs.pop()
        lines.append((math.log(n), ":", f"ln {n} (chance from context)"))
    return lines


def _ylabel(metric: str) -> str:
    kind = metric.rsplit("/", 1)[-1]
    return {"loss": "loss (nats)", "acc": "accuracy (fraction correct)"}.get(kind, kind.replace("_", " "))


def plot_curves(df: pd.DataFrame, arms: Sequence[str], metric: str, plots: Path, stem: str, title: str,
                study: dict | None = None, control: str | None = None) -> list[Path]:
    """Write :func:`curves_figure` as ``plots/<stem>.png`` and ``.svg`` (nothing when no arm has ``metric``)."""
    fig = curves_figure(df, arms, metric, title, study=study, control=control)
    return [] if fig is None else save_figure(fig, plots / stem)


def curves_figure(df: pd.DataFrame, arms: Sequence[str], metric: str, title: str, study: dict | None = None,
                  control: str | None = None):
    """Median and IQR band across seeds per arm, the control drawn in every panel.

    With a control and two or more other arms, one panel per other arm (small
    multiples, wrapped three to a row), the control solid in each; otherwise one
    panel.  Colours and line styles come from
    :func:`clamp.analysis.figures.arm_styles` (the same in every figure).
    """
    study = study or {}
    styles = arm_styles(arms, control)
    present = [a for a in arms if _wide(df, a, metric).size]
    if not present:
        return None
    others = [a for a in present if a != control]
    panels = [[control, a] for a in others] if control in present and len(others) >= 2 else [present]
    fig, axes = _grid(len(panels))
    for ax, group in zip(axes, panels):
        for arm in group:
            _band(ax, _wide(df, arm, metric), styles[arm], arm)
        for y, ls, label in reference_lines(study, metric):
            ax.axhline(y, color="0.3", ls=ls, lw=1, label=label, zorder=1)
        shade_windows(ax, df, study, group, styles)  # fixed windows shaded; triggered ones per run
        if len(panels) > 1:
            ax.set_title(f"{group[1]} vs {group[0]}", fontsize=9)
        sequences_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes:
        ax.set_ylabel(_ylabel(metric))
    fig.suptitle(title, fontsize=10)
    return fig


def plot_heldout(df: pd.DataFrame, arms: Sequence[str], plots: Path, kind: str, study: dict | None = None,
                 control: str | None = None) -> list[Path]:
    """One panel per held-out evaluator (``kind`` is ``loss`` or ``acc``), arms overlaid, panels wrapped."""
    evals = sorted({m.split("/")[0] for m in df["metric"].unique() if m.endswith(f"/{kind}") and m.startswith("heldout")})
    if not evals:
        return []
    styles = arm_styles(arms, control)
    fig, axes = _grid(len(evals))
    for ax, ev in zip(axes, evals):
        for arm in arms:
            wide = _wide(df, arm, f"{ev}/{kind}")
            if wide.size:
                _band(ax, wide, styles[arm], arm)
        for y, ls, label in reference_lines(study or {}, f"{ev}/{kind}"):
            ax.axhline(y, color="0.3", ls=ls, lw=1, label=label, zorder=1)
        ax.set_title(ev.replace("_", " "), fontsize=9)
        ax.set_ylabel(_ylabel(f"{ev}/{kind}"))
        sequences_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Held-out evaluators: {_ylabel(kind)} (median and IQR across seeds)", fontsize=10)
    return save_figure(fig, plots / f"heldout_{kind}")


def plot_heads(df: pd.DataFrame, arms: Sequence[str], family: str, plots: Path, layers: Sequence[int] | None = None) -> list[Path]:
    """Write :func:`heads_figure` as ``plots/heads_<family>.png`` and ``.svg`` (nothing when no head has scores)."""
    fig = heads_figure(df, arms, family, layers)
    return [] if fig is None else save_figure(fig, plots / f"heads_{family}")


def heads_figure(df: pd.DataFrame, arms: Sequence[str], family: str, layers: Sequence[int] | None = None):
    """Per-head score curves (``family`` e.g. ``induction``), one panel per arm wrapped into a grid (three per row),
    median and IQR across seeds."""
    # per-head scores only: a user metric may share the family's prefix (``prev_token/best``)
    heads = {m: parse_head(m) for m in df["metric"].unique()}
    names = sorted(m for m, h in heads.items() if h is not None and h[0] == family
                   and (layers is None or h[1] in layers))
    if not names:
        return None
    fig, axes = _grid(len(arms), cols=3, width=4.0, height=3.2)
    head_styles = {n: {"color": c, "ls": "-", "lw": 1.6} for n, c in arm_colours(names).items()}
    for ax, arm in zip(axes, arms):
        for name in names:
            wide = _wide(df, arm, name)
            if wide.size:
                _band(ax, wide, head_styles[name], name.split("/")[1], seeds=False)
        ax.set_title(arm, fontsize=9)
        ax.set_ylabel(f"{family.replace('_', ' ')} score")
        sequences_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"Per-head {family.replace('_', ' ')} score by arm (median and IQR across seeds; score, no unit)",
                 fontsize=10)
    return fig


def plot_attention(study_dir: Path, study: dict, arm: dict, plots: Path) -> list[Path]:
    """Mean attention patterns of the chosen heads at the chosen checkpoints, for the arm's first seed."""
    for seed in study.get("seeds", []):
        path = run_dir(study_dir, arm["name"], seed) / "attention.csv"
        if path.is_file():
            att = pd.read_csv(path)
            if len(att):
                break
    else:
        return []
    # by default the last layer's first four heads, read from the patterns the run recorded (any model)
    last = int(att["layer"].max())
    heads = study.get("heatmap_heads") or [
        f"L{last}H{h}" for h in sorted(att.loc[att["layer"] == last, "head"].unique())[:4]]
    points = sorted(att["sequences_seen"].unique())
    if study.get("heatmap_at"):
        chosen = sorted({min(points, key=lambda p: abs(p - want)) for want in study["heatmap_at"]})
    else:
        idx = sorted({round(i * (len(points) - 1) / 3) for i in range(4)}) if len(points) > 1 else [0]
        chosen = [points[i] for i in idx]
    plt = _pyplot()
    fig, axes = plt.subplots(len(heads), len(chosen), figsize=(2.2 * len(chosen) + 1, 2.2 * len(heads)), squeeze=False)
    T = int(att["query"].max()) + 1
    im = None
    for i, head in enumerate(heads):
        layer, h = map(int, head[1:].split("H"))
        for j, seen in enumerate(chosen):
            ax = axes[i][j]
            d = att[(att["sequences_seen"] == seen) & (att["layer"] == layer) & (att["head"] == h)]
            grid = d.pivot_table(index="query", columns="key", values="value").reindex(index=range(T), columns=range(T))
            im = ax.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(range(T))
            ax.set_yticks(range(T))
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(f"{seen:,} seqs", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{head}\nquery position", fontsize=8)
            if i == len(heads) - 1:
                ax.set_xlabel("key position", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="mean attention weight (0–1)")
    fig.suptitle(f"{arm['name']}: mean attention pattern (seed {seed}, training distribution)")
    return save_figure(fig, plots / f"attention_{arm['name']}")


def make_plots(study_dir: Path, study: dict, df: pd.DataFrame, arms: Sequence[str],
               control: str | None) -> list[tuple[str, list[Path]]]:
    """Every figure of the report, as ``(title, [png, svg])`` (an empty list for a figure with no data)."""
    plots = study_dir / "plots"
    made: list[tuple[str, list[Path]]] = []
    made.append(("Training loss", plot_curves(df, arms, "train/loss", plots, "curves_train_loss",
                                              "Training loss (fixed sample of the training distribution)",
                                              study=study, control=control)))
    made.append(("Training accuracy", plot_curves(df, arms, "train/acc", plots, "curves_train_acc",
                                                  "Training accuracy (fixed sample of the training distribution)",
                                                  study=study, control=control)))
    made.append(("Held-out loss", plot_heldout(df, arms, plots, "loss", study=study, control=control)))
    made.append(("Held-out accuracy", plot_heldout(df, arms, plots, "acc", study=study, control=control)))
    made.append(("Induction strength per head", plot_heads(df, arms, "induction", plots)))
    made.append(("Prefix-matching score per head", plot_heads(df, arms, "prefix_match", plots)))
    made.append(("Previous-token score per layer-0 head", plot_heads(df, arms, "prev_token", plots, layers=[0])))
    for arm in study["arms"]:
        made.append((f"Attention patterns: {arm['name']}", plot_attention(study_dir, study, arm, plots)))
    return made


__all__ = ["arm_colours", "arm_styles", "curves_figure", "heads_figure", "make_plots", "plot_attention",
           "plot_curves", "plot_heads", "plot_heldout", "reference_lines", "save_figure", "sequences_axis", "shade_windows"]
