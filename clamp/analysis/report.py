"""The report of a study: ``summary.csv``, plots and the ``report.md`` index, rebuilt from stored files.

Why this file exists: results must be regenerable without training.  Everything
here reads only ``study.json``, each run's ``run.json``, ``metrics.csv`` and
``attention.csv`` (plus ``stats.md`` if :mod:`clamp.analysis.stats` wrote one), so
``clamp report results/<study>`` rebuilds it all at any time.

Plots (PNG and SVG, x axis in sequences seen, arms named as the study names them):

- ``curves_train_loss``: per arm, median and interquartile band across seeds, thin
  per-seed lines, the 0.4 ln 2 threshold and the ln 2 level marked;
- ``curves_train_acc``; ``heldout_loss`` / ``heldout_acc``: the held-out evaluators;
- ``heads_induction`` (``heads_prefix_match``, ``heads_prev_token``): per-head scores, one panel per arm;
- ``attention_<arm>``: mean attention patterns of chosen heads at chosen checkpoints.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from clamp.execution.store import atomic_write_text, read_json, run_dir

LN2 = math.log(2.0)
_STATUS_ORDER = ("finished", "diverged", "failed", "running", "pending")


def _pyplot():
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_metrics(study_dir: str | Path) -> pd.DataFrame:
    """All runs' metrics in long format, with an ``arm`` column: ``arm, sequences_seen, run, metric, value``."""
    frames = []
    for p in sorted(Path(study_dir).glob("runs/*/seed*/metrics.csv")):
        df = pd.read_csv(p)
        if len(df):
            df.insert(0, "arm", p.parent.parent.name)
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["arm", "sequences_seen", "run", "metric", "value"])
    return pd.concat(frames, ignore_index=True)


def _phase_rules(study: dict) -> list[dict]:
    phase = study.get("phase") or {"metric": "train/loss", "threshold": 0.4 * LN2, "direction": "below"}
    return phase if isinstance(phase, list) else [phase]


def crossing(df: pd.DataFrame, rule: dict) -> float:
    """First ``sequences_seen`` at which ``rule`` holds in a one-run metrics frame, NaN if never.

    Example:
        >>> d = pd.DataFrame({"sequences_seen": [0, 10, 20], "metric": "train/loss", "value": [0.7, 0.3, 0.1]})
        >>> crossing(d, {"metric": "train/loss", "threshold": 0.277, "direction": "below"})
        20.0
    """
    m = df[df["metric"] == rule["metric"]].sort_values("sequences_seen")
    hit = m["value"] < rule["threshold"] if rule.get("direction", "below") == "below" else m["value"] > rule["threshold"]
    return float(m["sequences_seen"][hit].iloc[0]) if hit.any() else float("nan")


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
            m = metrics[(metrics["arm"] == arm["name"]) & (metrics["run"] == seed)]
            row["sequences_seen"] = int(m["sequences_seen"].max()) if len(m) else 0
            for i, rule in enumerate(rules):
                row["crossed_at" if i == 0 else f"crossed_at_{i}"] = crossing(m, rule) if len(m) else float("nan")
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

def _save(fig, plots: Path, stem: str) -> list[Path]:  # noqa: ANN001 - a matplotlib Figure
    plots.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "svg"):
        path = plots / f"{stem}.{ext}"
        tmp = plots / f".{stem}.{ext}.tmp"
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=ext)
        os.replace(tmp, path)
        out.append(path)
    _pyplot().close(fig)
    return out


def _sequences_axis(ax) -> None:  # noqa: ANN001
    """Label the x axis in sequences seen, with compact ticks (20k, 1.5M)."""
    from matplotlib.ticker import FuncFormatter

    def fmt(v: float, _pos: int) -> str:
        for unit, div in (("M", 1e6), ("k", 1e3)):
            if abs(v) >= div:
                return f"{v / div:g}{unit}"
        return f"{v:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.set_xlabel("sequences seen")


def _band(ax, wide: pd.DataFrame, color, label: str, seeds: bool = True) -> None:  # noqa: ANN001
    """Median and interquartile band across the columns (seeds) of ``wide``; thin per-seed lines."""
    x = wide.index.to_numpy()
    if seeds and wide.shape[1] > 1:
        for col in wide.columns:
            ax.plot(x, wide[col].to_numpy(), color=color, lw=0.6, alpha=0.35)
    med = wide.median(axis=1, skipna=True)
    if seeds and wide.shape[1] > 1:
        label = f"{label} (median of {wide.shape[1]} seeds)"
    ax.plot(x, med.to_numpy(), color=color, lw=2, label=label)
    if wide.shape[1] > 1:
        ax.fill_between(x, wide.quantile(0.25, axis=1).to_numpy(), wide.quantile(0.75, axis=1).to_numpy(),
                        color=color, alpha=0.2, lw=0)


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
    return d.pivot_table(index="sequences_seen", columns="run", values="value", aggfunc="first").sort_index()


def _colors(n: int) -> list:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def plot_curves(df: pd.DataFrame, arms: Sequence[str], metric: str, plots: Path, stem: str, title: str,
                ylabel: str, thresholds: bool = False) -> list[Path]:
    """One axes, every arm: median and IQR band across seeds, thin seed lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for arm, color in zip(arms, _colors(len(arms))):
        wide = _wide(df, arm, metric)
        if wide.size:
            _band(ax, wide, color, arm)
            drawn = True
    if not drawn:
        plt.close(fig)
        return []
    if thresholds:
        ax.axhline(LN2, color="0.4", ls=":", lw=1, label="ln 2 (chance from context)")
        ax.axhline(0.4 * LN2, color="0.2", ls="--", lw=1, label="0.4 ln 2 (learned)")
    _sequences_axis(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, plots, stem)


def plot_heldout(df: pd.DataFrame, arms: Sequence[str], plots: Path, kind: str) -> list[Path]:
    """One panel per held-out evaluator (``kind`` is ``loss`` or ``acc``), arms overlaid."""
    evals = sorted({m.split("/")[0] for m in df["metric"].unique() if m.endswith(f"/{kind}") and m.startswith("heldout")})
    if not evals:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(evals), figsize=(4.2 * len(evals), 3.8), squeeze=False, sharey=True)
    for ax, ev in zip(axes[0], evals):
        for arm, color in zip(arms, _colors(len(arms))):
            wide = _wide(df, arm, f"{ev}/{kind}")
            if wide.size:
                _band(ax, wide, color, arm)
        if kind == "loss":
            ax.axhline(LN2, color="0.4", ls=":", lw=1)
            ax.axhline(0.4 * LN2, color="0.2", ls="--", lw=1)
        ax.set_title(ev.replace("_", " "))
        _sequences_axis(ax)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(kind)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Held-out evaluators: {kind} (median and IQR across seeds)")
    return _save(fig, plots, f"heldout_{kind}")


def plot_heads(df: pd.DataFrame, arms: Sequence[str], family: str, plots: Path, layers: Sequence[int] | None = None) -> list[Path]:
    """Per-head score curves (``family`` e.g. ``induction``), one panel per arm, median and IQR across seeds."""
    names = sorted(m for m in df["metric"].unique() if m.startswith(f"{family}/"))
    if layers is not None:
        names = [n for n in names if int(n.split("/")[1][1:].split("H")[0]) in layers]
    if not names:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.8), squeeze=False, sharey=True)
    colors = _colors(len(names))
    for ax, arm in zip(axes[0], arms):
        for name, color in zip(names, colors):
            wide = _wide(df, arm, name)
            if wide.size:
                _band(ax, wide, color, name.split("/")[1], seeds=False)
        ax.set_title(arm)
        _sequences_axis(ax)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{family.replace('_', ' ')} score")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Per-head {family.replace('_', ' ')} score by arm (median and IQR across seeds)")
    return _save(fig, plots, f"heads_{family}")


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
                ax.set_ylabel(f"{head}\nquery pos", fontsize=8)
            if i == len(heads) - 1:
                ax.set_xlabel("key pos", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="mean attention")
    fig.suptitle(f"{arm['name']}: mean attention pattern (seed {seed}, training distribution)")
    return _save(fig, plots, f"attention_{arm['name']}")


# --- index page -------------------------------------------------------------------------------

def _fmt(v) -> str:  # noqa: ANN001
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"
    return str(v)


def _intervention_text(arm: dict) -> str:
    items = arm.get("interventions") or []
    if not items:
        return "none"
    return ", ".join(f"`{i.get('name') or i.get('kind')}`" for i in items)


def _fired_text(df: pd.DataFrame, arm: str) -> str:
    d = df[(df["arm"] == arm) & df["metric"].str.startswith("fired/")]
    if not len(d):
        return ""
    last = d[d["sequences_seen"] == d.groupby("run")["sequences_seen"].transform("max")]
    med = last.groupby("metric")["value"].median()
    return ", ".join(f"{m.split('/', 1)[1]}: {v:g}" for m, v in med.items())


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
    made: list[tuple[str, list[Path]]] = []
    made.append(("Training loss", plot_curves(df, arms, "train/loss", plots, "curves_train_loss",
                                              "Training loss (fixed sample of the training distribution)", "loss", thresholds=True)))
    made.append(("Training accuracy", plot_curves(df, arms, "train/acc", plots, "curves_train_acc",
                                                  "Training accuracy (fixed sample of the training distribution)", "accuracy")))
    made.append(("Held-out loss", plot_heldout(df, arms, plots, "loss")))
    made.append(("Held-out accuracy", plot_heldout(df, arms, plots, "acc")))
    made.append(("Induction strength per head", plot_heads(df, arms, "induction", plots)))
    made.append(("Prefix-matching score per head", plot_heads(df, arms, "prefix_match", plots)))
    made.append(("Previous-token score per layer-0 head", plot_heads(df, arms, "prev_token", plots, layers=[0])))
    for arm in study["arms"]:
        made.append((f"Attention patterns: {arm['name']}", plot_attention(study_dir, study, arm, plots)))
    summary = summary_frame(study_dir)

    out = [f"# Study `{study['name']}`", ""]
    if study.get("description"):
        out += [study["description"].strip(), ""]
    out += [f"- {len(arms)} arm(s) x {len(study['seeds'])} seed(s) {study['seeds']}, {study.get('n_sequences', 0):,} sequences each",
            f"- control: `{study.get('control')}`; learned when "
            + " / ".join(f"{r['metric']} is {r.get('direction', 'below')} {r['threshold']:.4g}" for r in _phase_rules(study)),
            f"- code revision `{study.get('code_revision', 'unknown')}`; versions {study.get('versions', {})}",
            f"- machine: {study.get('machine', {})}",
            f"- files: [study.json](study.json), [summary.csv](summary.csv)", ""]
    out += ["## Arms", "", "Fired: how many times each intervention fired between the last two evaluations "
            "(median over seeds; 0 would mean it did nothing).", "",
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
    return path
