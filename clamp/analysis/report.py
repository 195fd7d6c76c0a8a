"""The report of a study: ``summary.csv``, plots, ``report.md`` and ``index.html``, rebuilt from stored files.

Why this file exists: results must be regenerable without training.  Everything here reads
only ``study.json``, each run's ``run.json``, ``metrics.csv`` and ``attention.csv`` (plus the
statistics' files if :mod:`clamp.analysis.stats` wrote them), so ``clamp report results/<study>``
rebuilds it all at any time.  This module writes the plain-text page ``report.md``;
:mod:`clamp.analysis.summary` computes what it says, :mod:`clamp.analysis.plots` draws the
figures, and :mod:`clamp.analysis.html` writes the self-contained browser twin ``index.html``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from clamp.analysis.html import build_html
from clamp.analysis.plots import make_plots
from clamp.analysis.summary import (STATUS_ORDER, budget_lines, budget_words, code_lines, fired_text, fmt, intervention_text, load_metrics,
                                    grid_words, model_words, rule_words, summary_frame)
from clamp.store import atomic_write_text, read_json


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
    out += [f"- {len(arms)} arm(s) x {len(study['seeds'])} seed(s) {study['seeds']}, {budget_words(study)}",
            *budget_lines(study),
            f"- control: `{study.get('control')}`; phase change (first rule primary): {rule_words(study)}",
            f"- {grid_words(study)}",
            f"- code revision `{study.get('code_revision', 'unknown')}`; versions {study.get('versions', {})}",
            *(f"- {line}" for line in code_lines(study_dir, study)),
            f"- machine: {study.get('machine', {})}",
            "- files: [study.json](study.json), [summary.csv](summary.csv)", ""]
    out += ["## Arms", "", "Fired: how many times each intervention fired in the whole run, summed over every "
            "evaluation interval of its windows (median over seeds; 0 means it never fired).", "",
            "| arm | factors | interventions | fired | lr | batch | model | task |", "|---|---|---|---|---|---|---|---|"]
    for a in study["arms"]:
        m, t = a["model"], a["task"]
        model = model_words(m)
        task = ", ".join(f"{k}={v}" for k, v in t.items() if k in ("kind", "n_classes", "n_labels", "n_pairs", "vocab", "half"))
        out.append(f"| `{a['name']}` | {a.get('factors') or ''} | {intervention_text(a)} | {fired_text(df, a['name'])} | {a['train']['lr']:g} | "
                   f"{a['train']['batch_size']} | {model} | {task} |")
    out += ["", "## Runs", ""]
    if len(summary):
        counts = summary["status"].value_counts()
        out.append(", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if s in counts))
        out += ["", "| arm | seed | status | sequences seen | crossed at | final train loss | wall s | files | error |",
                "|---|---|---|---|---|---|---|---|---|"]
        for _, r in summary.iterrows():
            folder = f"runs/{r['arm']}/seed{r['seed']}"
            files = f"[run.json]({folder}/run.json), [metrics.csv]({folder}/metrics.csv)"
            if (study_dir / folder / "attention.csv").is_file():
                files += f", [attention.csv]({folder}/attention.csv)"
            out.append(f"| `{r['arm']}` | {r['seed']} | **{r['status']}** | {fmt(r['sequences_seen'])} | "
                       f"{fmt(r.get('crossed_at'))} | {fmt(r.get('final_train_loss'))} | {fmt(r.get('wall_seconds'))} | "
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

    build_html(study_dir, study=study, metrics=df, summary=summary, figures=made)
    return path


__all__ = ["build_report"]
