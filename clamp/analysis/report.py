"""The report of a study: ``summary.csv``, plots, ``report.md`` and ``index.html``, rebuilt from stored files.

Why this file exists: results must be regenerable without training.  Everything
here reads only ``study.json``, each run's ``run.json``, ``metrics.csv`` and
``attention.csv`` (plus the statistics' files if :mod:`clamp.analysis.stats` wrote
them), so ``clamp report results/<study>`` rebuilds it all at any time.
``report.md`` is the plain-text page; :mod:`clamp.analysis.html` writes its
self-contained browser twin ``index.html``.

Plots (PNG and SVG, x axis in sequences seen, units on every axis, one colour
and line style per arm in every figure, the control solid and drawn in every panel):

- ``curves_train_loss``: per arm, median and interquartile band across seeds, thin
  per-seed lines; the phase rule's threshold on its metric, and ln(pairs) "chance
  from context" on few-shot losses only (:func:`reference_lines`); with several
  arms besides the control, one panel per arm, each with the control;
- ``curves_train_acc``; ``heldout_loss`` / ``heldout_acc``: the held-out evaluators;
- ``heads_induction`` (``heads_prefix_match``, ``heads_prev_token``): per-head scores,
  one panel per arm, three to a row;
- ``attention_<arm>``: mean attention patterns of chosen heads at chosen checkpoints.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import pandas as pd

from clamp.analysis.figures import arm_colours, arm_styles, save_figure, sequences_axis
from clamp.analysis.results import read_metrics
from clamp.analysis.trigger_marks import mark_triggers
from clamp.phase import LN2, PhaseRule, arm_windows, crossing_time
from clamp.names import FIRED_PREFIX
from clamp.store import atomic_write_text, read_json, run_dir

_STATUS_ORDER = ("finished", "diverged", "failed", "running", "pending")


def load_metrics(study_dir: str | Path) -> pd.DataFrame:
    """All runs' metrics in long format: ``arm, seed, sequences_seen, metric, value`` (see :func:`clamp.analysis.results.read_metrics`)."""
    return read_metrics(study_dir)


def _phase_rules(study: dict) -> list[dict]:
    phase = study.get("phase") or {"metric": "train/loss", "threshold": 0.4 * LN2, "direction": "below"}
    return phase if isinstance(phase, list) else [phase]


def summary_frame(study_dir: str | Path) -> pd.DataFrame:
    """One row per (arm, seed) of the study, with status, final metrics and crossing time."""
    study_dir = Path(study_dir)
    study = read_json(study_dir / "study.json") or {}
    metrics = load_metrics(study_dir)
    rules = _phase_rules(study)
    rows = []
    for arm in study.get("arms", []):
        for seed in study.get("seeds", []):
            rec = read_json(run_dir(study_dir, arm["name"], seed) / "run.json") or {"status": "pending"}
            row = {"arm": arm["name"], "seed": seed, "status": rec.get("status", "pending")}
            m = metrics[(metrics["arm"] == arm["name"]) & (metrics["seed"] == seed)]
            row["sequences_seen"] = int(m["sequences_seen"].max()) if len(m) else 0
            for i, rule in enumerate(rules):
                r = PhaseRule.from_dict(rule)  # the statistics' own crossing rule (persistence, windows, relapse)
                c = crossing_time(m["sequences_seen"][m["metric"] == r.metric], m["value"][m["metric"] == r.metric], r,
                                  windows=arm_windows(arm))
                row["crossed_at" if i == 0 else f"crossed_at_{i}"] = c.time if c.event else float("nan")
            if len(m):
                last = m[m["sequences_seen"] == m["sequences_seen"].max()].set_index("metric")["value"]
                for name in sorted(last.index):
                    if name.endswith("/loss") or name.endswith("/acc"):
                        row[f"final_{name.replace('/', '_')}"] = float(last[name])
            row["diverged_at"] = rec.get("diverged_at")
            row["wall_seconds"] = rec.get("timings", {}).get("wall_seconds")
            row["hash"] = rec.get("hash")
            row["error"] = (rec.get("error") or "").splitlines()[0] if rec.get("error") else ""
            rows.append(row)
    return pd.DataFrame(rows)


def write_summary(study_dir: str | Path) -> Path:
    """Write ``summary.csv`` (one row per run) atomically; returns its path."""
    path = Path(study_dir) / "summary.csv"
    atomic_write_text(path, summary_frame(study_dir).to_csv(index=False))
    return path


# --- plots ------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax, wide: pd.DataFrame, style: dict, label: str, seeds: bool = True) -> None:  # noqa: ANN001
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


def _grid(n: int, *, cols: int = 3, width: float = 4.4, height: float = 3.4, sharey: bool = True):  # noqa: ANN202
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
    for rule in _phase_rules(study):
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
                  control: str | None = None):  # noqa: ANN201 - a matplotlib Figure, or None
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
        mark_triggers(ax, df, group, styles)  # where each run's triggered window opened/closed
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


def heads_figure(df: pd.DataFrame, arms: Sequence[str], family: str, layers: Sequence[int] | None = None):  # noqa: ANN201
    """Per-head score curves (``family`` e.g. ``induction``), one panel per arm wrapped into a grid (three per row),
    median and IQR across seeds."""
    names = sorted(m for m in df["metric"].unique() if m.startswith(f"{family}/"))
    if layers is not None:
        names = [n for n in names if int(n.split("/")[1][1:].split("H")[0]) in layers]
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
    model = arm["model"]
    heads = study.get("heatmap_heads") or [f"L{model['n_layers'] - 1}H{h}" for h in range(min(model["n_heads"], 4))]
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


# --- index page -------------------------------------------------------------------------------

def _fmt(v) -> str:  # noqa: ANN001
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"
    return str(v)


def window_words(windows: Sequence[dict] | None) -> str:
    """An intervention's windows in words, in sequences seen.

    Example:
        >>> window_words([{"start": 0, "stop": 20000}, {"start": 30000, "stop": None}])
        'sequences 0–20,000 and 30,000–end of training'
    """
    if not windows:
        return "whole training"
    def end(v: object, none: str) -> str:  # a number, None, or a trigger's dict (clamp.When)
        if isinstance(v, dict):
            from clamp.interventions.when import When

            return f"[{When.from_dict(v).describe()}]"
        return none if v is None else f"{int(v):,}"

    parts = [end(w.get("start") or 0, "0") + "–" + end(w.get("stop"), "end of training") for w in windows]
    return "sequences " + " and ".join(parts)


_QUIET_KEYS = {"kind", "name", "windows"}


def intervention_words(item: dict) -> str:
    """One intervention of ``study.json`` in words: name, kind, its non-empty settings and its windows.

    Generic over kinds (built-in or a user's): every setting the record stores is shown.

    Example:
        >>> intervention_words({"kind": "knockout", "name": "ko", "windows": [{"start": 0, "stop": None}],
        ...                     "site": "blocks.1.attn.hook_v", "keep": [0], "heads": None})
        'ko (knockout; site=blocks.1.attn.hook_v, keep=[0]) during sequences 0–end of training'
    """
    settings = ", ".join(f"{k}={v}" for k, v in item.items() if k not in _QUIET_KEYS and v not in (None, [], {}, ""))
    name = item.get("name") or item.get("kind")
    kind = f"{item.get('kind')}; {settings}" if settings else f"{item.get('kind')}"
    return f"{name} ({kind}) during {window_words(item.get('windows'))}"


def fired_totals(df: pd.DataFrame, arm: str) -> dict[str, float]:
    """How many times each intervention of ``arm`` fired in the whole run: the sum of its ``fired/<name>``
    counts over every evaluation (so over all its windows), median over seeds.

    A window that ended before the last evaluation still counts: the total is over
    the run, not the last interval.  0 means it never fired.

    Example:
        >>> d = pd.DataFrame({"arm": "a", "seed": [0, 0, 0], "sequences_seen": [0, 10, 20],
        ...                   "metric": "fired/clamp", "value": [1.0, 4.0, 0.0]})
        >>> fired_totals(d, "a")
        {'clamp': 5.0}
    """
    d = df[(df["arm"] == arm) & df["metric"].str.startswith(FIRED_PREFIX)]
    if not len(d):
        return {}
    per_run = d.groupby(["metric", "seed"])["value"].sum().groupby("metric").median()
    return {m.removeprefix(FIRED_PREFIX): float(v) for m, v in per_run.items()}


def _intervention_text(arm: dict) -> str:
    items = arm.get("interventions") or []
    if not items:
        return "none"
    return "; ".join(f"`{i.get('name') or i.get('kind')}` ({window_words(i.get('windows'))})" for i in items)


def _fired_text(df: pd.DataFrame, arm: str) -> str:
    return ", ".join(f"{name}: {v:,.0f}" for name, v in fired_totals(df, arm).items())


def _budget_lines(study: dict) -> list[str]:
    """Report lines for arms with their own length, and for stopping after the phase change."""
    n = study.get("n_sequences", 0)
    own = [f"`{a['name']}` {a['n_sequences']:,}" for a in study.get("arms", []) if a.get("n_sequences", n) != n]
    out = [f"- arms with their own length: {', '.join(own)} sequences"] if own else []
    stop = study.get("stop_after_phase")
    if stop:
        out.append(f"- runs stop {stop['margin']:,} sequences (+ {stop['relative']:g} x the crossing time) after their "
                   "phase change (primary rule); their curves end there, and they count as crossed, not censored")
    return out


def build_report(study_dir: str | Path) -> Path:
    """Rebuild every plot and ``report.md`` from the stored files; returns the report's path.

    Example:
        >>> # build_report("results/quickstart")
    """
    study_dir = Path(study_dir)
    study = read_json(study_dir / "study.json")
    if study is None:
        raise FileNotFoundError(f"{study_dir / 'study.json'} is missing or unreadable")
    plots = study_dir / "plots"
    df = load_metrics(study_dir)
    arms = [a["name"] for a in study["arms"]]
    control = study.get("control")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN medians of a run that has not started
        made = make_plots(study_dir, study, df, arms, control)
    summary = summary_frame(study_dir)

    out = [f"# Study `{study['name']}`", ""]
    if study.get("description"):
        out += [study["description"].strip(), ""]
    out += [f"- {len(arms)} arm(s) x {len(study['seeds'])} seed(s) {study['seeds']}, {study.get('n_sequences', 0):,} sequences each",
            *_budget_lines(study),
            f"- control: `{study.get('control')}`; learned when "
            + " / ".join(f"{r['metric']} is {r.get('direction', 'below')} {r['threshold']:.4g}" for r in _phase_rules(study)),
            f"- code revision `{study.get('code_revision', 'unknown')}`; versions {study.get('versions', {})}",
            f"- machine: {study.get('machine', {})}",
            f"- files: [study.json](study.json), [summary.csv](summary.csv)", ""]
    out += ["## Arms", "", "Fired: how many times each intervention fired in the whole run, summed over every "
            "evaluation interval of its windows (median over seeds; 0 means it never fired).", "",
            "| arm | factors | interventions | fired | lr | batch | model | task |", "|---|---|---|---|---|---|---|---|"]
    for a in study["arms"]:
        m, t = a["model"], a["task"]
        model = (f"{m['factory'].rsplit(':', 1)[-1]}({', '.join(f'{k}={v}' for k, v in m['kwargs'].items())})"  # foreign
                 if m.get("kind") == "foreign" else f"{m['n_layers']}L x {m['n_heads']}H, d={m['d_model']}")
        task = ", ".join(f"{k}={v}" for k, v in t.items() if k in ("kind", "n_classes", "n_labels", "n_pairs", "vocab", "half"))
        out.append(f"| `{a['name']}` | {a.get('factors') or ''} | {_intervention_text(a)} | {_fired_text(df, a['name'])} | {a['train']['lr']:g} | "
                   f"{a['train']['batch_size']} | {model} | {task} |")
    out += ["", "## Runs", ""]
    if len(summary):
        counts = summary["status"].value_counts()
        out.append(", ".join(f"{counts[s]} {s}" for s in _STATUS_ORDER if s in counts))
        out += ["", "| arm | seed | status | sequences seen | crossed at | final train loss | wall s | files | error |",
                "|---|---|---|---|---|---|---|---|---|"]
        for _, r in summary.iterrows():
            folder = f"runs/{r['arm']}/seed{r['seed']}"
            files = f"[run.json]({folder}/run.json), [metrics.csv]({folder}/metrics.csv)"
            if (study_dir / folder / "attention.csv").is_file():
                files += f", [attention.csv]({folder}/attention.csv)"
            out.append(f"| `{r['arm']}` | {r['seed']} | **{r['status']}** | {_fmt(r['sequences_seen'])} | "
                       f"{_fmt(r.get('crossed_at'))} | {_fmt(r.get('final_train_loss'))} | {_fmt(r.get('wall_seconds'))} | "
                       f"{files} | {r.get('error') or ''} |")
    out += ["", "## Plots", ""]
    for title, paths in made:
        if paths:
            png = paths[0].relative_to(study_dir).as_posix()
            svg = paths[1].relative_to(study_dir).as_posix()
            out += [f"### {title}", "", f"![{title}]({png})", "", f"[SVG]({svg})", ""]
    stats_md = study_dir / "stats.md"
    if stats_md.is_file():
        out += ["## Statistics", "", stats_md.read_text().strip(), ""]
    extra = sorted(p for p in study_dir.glob("*.csv") if p.name != "summary.csv") + sorted(plots.glob("stats_*.png"))
    if extra:
        out += ["### Statistics files", ""] + [f"- [{p.relative_to(study_dir).as_posix()}]({p.relative_to(study_dir).as_posix()})" for p in extra] + [""]
    analyses = study_dir / "analyses"
    if analyses.is_dir():
        out += ["## Post-hoc analyses (`clamp analyse`)", "",
                "Computed from checkpoints: per-head induction strength, redundancy (each layer-2 head knocked out "
                "alone / kept alone), additivity (heads added back strongest first), K- vs V-composition of layer-1 "
                "heads (pattern- vs value-preserving ablations), progress measures (clamps applied to checkpoints).", ""]
        out += [f"- [{c.relative_to(study_dir).as_posix()}]({c.relative_to(study_dir).as_posix()})"
                for c in sorted(analyses.glob("*.csv"))] + [""]
        for png in sorted((analyses / "plots").glob("*.png")):
            rel = png.relative_to(study_dir).as_posix()
            out += [f"### {png.stem.replace('_', ' ')}", "", f"![{png.stem}]({rel})", "",
                    f"[SVG]({rel[:-4]}.svg)", ""]
    out += ["---", f"Rebuild with `clamp report {study_dir.as_posix()}` (reads only the stored files).", ""]
    path = study_dir / "report.md"
    atomic_write_text(path, "\n".join(out))
    from clamp.analysis.html import build_html  # the browser twin of report.md

    build_html(study_dir, study=study, metrics=df, summary=summary, figures=made)
    return path


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
