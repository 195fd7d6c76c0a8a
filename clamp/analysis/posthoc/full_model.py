"""The full-model analyses of a finished study: the thin I/O layer over the pure analyses.

Why this file exists: it is the only place in :mod:`clamp.analysis.posthoc` that reads
and writes files.  For every run of the chosen arm(s) it rebuilds the run's
:class:`clamp.training.trainer.Trainer` from ``study.json`` (so the evaluation set is
exactly the one training used: drawn with ``RunSeeds.from_seed(seed).eval``),
loads each checkpoint's weights into it, hands (model, batch, interventions)
to the pure analyses, and writes under ``results/<study>/analyses/``:

==========================  =========================================================  =====================
file                        what                                                       when
==========================  =========================================================  =====================
head_scores.csv             induction strength (layers >= 1), previous-token score     every checkpoint
redundancy.csv              knock one layer-2 head out / keep one alone                final (or every)
redundancy_summary.csv      Spearman(keep-alone acc/loss, induction strength) per run  final (or every)
additivity.csv              loss as layer-2 heads are added back, strongest first      final (or every)
composition.csv             pattern- / value-preserving ablation of layer-1 heads      final (or every)
composition_summary.csv     per layer-1 head: deltas and K / V / both / none           final (or every)
progress.csv                loss with the layer-1 / match clamps (evaluation only)     every checkpoint
plots/*.png, *.svg          one labelled figure per table                              -
==========================  =========================================================  =====================

Every table has the key columns ``arm, seed, sequences_seen``.  The arm's own
interventions (e.g. the subcircuit study's knockouts) are applied in every
evaluation, the composition analysis's clean passes included.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from clamp.analysis.plots import save_figure
from clamp.analysis.posthoc.plots import plot_additivity, plot_composition, plot_induction, plot_progress, plot_redundancy
from clamp.analysis.posthoc.additivity import additivity
from clamp.analysis.posthoc.composition import classify_heads, composition
from clamp.analysis.posthoc.heads import head_scores
from clamp.analysis.posthoc.progress_measures import knocked_out, progress_measures
from clamp.analysis.posthoc.redundancy import redundancy, redundancy_summary
from clamp.errors import ConfigError
from clamp.model.config import ModelConfig
from clamp.store import atomic_write_text, checkpoints, read_json
from clamp.tasks import FewShotConfig, task_from_dict
from clamp.training.trainer import RunSeeds, Trainer
from clamp.training.config import TrainConfig

TABLES = ("head_scores", "redundancy", "redundancy_summary", "additivity", "composition", "composition_summary", "progress")
KEYS = ["arm", "seed", "sequences_seen"]


def _arms(record: dict, arm: str | None, study_dir: Path) -> list[dict]:
    arms = record.get("arms") or []
    names = [a["name"] for a in arms]
    if arm is not None:
        if arm not in names:
            raise ConfigError(f"{study_dir}: the study has no arm {arm!r}; its arms are {names}.")
        return [a for a in arms if a["name"] == arm]
    plain = [a for a in arms if not a.get("interventions")]
    if not plain:
        listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else ", ".join(names)
        raise ConfigError(f"{study_dir}: every arm of this study has interventions, so there is no plain arm to "
                          f"analyse by default. Name the arm to analyse: add --arm followed by {listed} "
                          f"(for example: clamp analyse {study_dir} --arm {names[0] if names else 'NAME'}).")
    return plain


def _with_keys(df: pd.DataFrame, arm: str, seed: int, seen: int) -> pd.DataFrame:
    df = df.drop(columns=["run"])
    df.insert(0, "sequences_seen", seen)
    df.insert(0, "seed", seed)
    df.insert(0, "arm", arm)
    return df


def _runs(study_dir: Path, arm: str) -> list[tuple[int, Path]]:
    out = []
    for folder in sorted((study_dir / "runs" / arm).glob("seed*")):
        if folder.name[4:].isdigit() and checkpoints(folder):
            out.append((int(folder.name[4:]), folder))
    return sorted(out)


def analyse_run(arm_rec: dict, seed: int, folder: Path, *, every_checkpoint: bool = False,
                method: Literal["zero", "mean", "resample"] = "zero", device: str = "cpu",
                log: Any = None) -> dict[str, list[pd.DataFrame]]:
    """All analyses of one run's checkpoints (see the module docstring); tables keyed by name, not yet concatenated."""
    from clamp.interventions.registry import intervention_from_dict

    model_cfg = ModelConfig.from_dict(arm_rec["model"])
    task_cfg = task_from_dict(arm_rec["task"])
    if not isinstance(task_cfg, FewShotConfig):
        raise ConfigError(f"arm {arm_rec['name']!r}: the full-model analyses need the few-shot task, not {task_cfg.kind!r}.")
    if model_cfg.n_layers < 2:
        raise ConfigError(f"arm {arm_rec['name']!r}: the full-model analyses need at least 2 layers (layer-1 and layer-2 heads).")
    train_cfg = replace(TrainConfig.from_dict(arm_rec["train"]), device=device)
    trainer = Trainer(model_cfg, task_cfg, train_cfg, seeds=[RunSeeds.from_seed(seed)])
    model, task, batch = trainer.model, trainer.task, trainer.eval_sets["train"]
    base = [intervention_from_dict(d) for d in arm_rec.get("interventions", [])]
    layer = model_cfg.n_layers - 1
    dead = knocked_out(base, layer, model_cfg.n_heads)
    heads = [h for h in range(model_cfg.n_heads) if h not in dead]
    points = checkpoints(folder)
    final = max(points)
    out: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    for seen, path in points.items():
        state = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        name = arm_rec["name"]
        scores = head_scores(model, batch, task, base, seen=seen)
        out["head_scores"].append(_with_keys(scores, name, seed, seen))
        out["progress"].append(_with_keys(progress_measures(model, batch, task, layer=layer, base=base, seen=seen),
                                          name, seed, seen))
        if seen == final or every_checkpoint:
            if len(heads) > 1:
                red = _with_keys(redundancy(model, batch, task, layer=layer, heads=heads, base=base, scores=scores, seen=seen),
                                 name, seed, seen)
                out["redundancy"].append(red)
                out["redundancy_summary"].append(redundancy_summary(red).assign(scope="run"))
                out["additivity"].append(_with_keys(additivity(model, batch, task, layer=layer, heads=heads, base=base,
                                                               scores=scores, seen=seen), name, seed, seen))
            comp = _with_keys(composition(model, batch, task, layer=0, method=method, base=base, seen=seen),
                              name, seed, seen)
            out["composition"].append(comp)
            out["composition_summary"].append(classify_heads(comp))
        if log is not None:
            log(f"{name} seed {seed}: checkpoint {seen:,} analysed")
    return out


def _pooled(red: pd.DataFrame) -> pd.DataFrame:
    """Spearman over the heads of every seed together, at each seed's final analysed checkpoint."""
    if red.empty:
        return red
    last = red[red.groupby(["arm", "seed"])["sequences_seen"].transform("max") == red["sequences_seen"]]
    pooled = redundancy_summary(last.drop(columns=["seed", "sequences_seen"]))
    return pooled.assign(scope="pooled_final")


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Write each table as ``out_dir/<name>.csv`` (atomically); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in tables.items():
        path = out_dir / f"{name}.csv"
        atomic_write_text(path, df.to_csv(index=False))
        paths.append(path)
    return paths


def write_plots(tables: dict[str, pd.DataFrame], out_dir: Path, layers: dict[str, int]) -> list[Path]:
    """One figure per table and arm under ``out_dir/plots/``; returns the paths written."""
    paths: list[Path] = []
    folder = out_dir / "plots"
    for arm, layer in layers.items():
        figs = []
        if not tables["head_scores"].empty:
            figs.append((f"induction_strength_{arm}", plot_induction(tables["head_scores"], arm, layer)))
        if not tables["redundancy"].empty and (tables["redundancy"]["arm"] == arm).any():
            figs.append((f"redundancy_{arm}", plot_redundancy(tables["redundancy"], arm)))
        if not tables["additivity"].empty and (tables["additivity"]["arm"] == arm).any():
            figs.append((f"additivity_{arm}", plot_additivity(tables["additivity"], arm)))
        if not tables["composition_summary"].empty and (tables["composition_summary"]["arm"] == arm).any():
            figs.append((f"composition_{arm}", plot_composition(tables["composition_summary"], arm)))
        if not tables["progress"].empty:
            figs.append((f"progress_{arm}", plot_progress(tables["progress"], tables["head_scores"], arm, layer)))
        for stem, fig in figs:
            paths += save_figure(fig, folder / stem)
    return paths


def analyse_full_model(study_dir: str | Path, *, arm: str | None = None, quiet: bool = False,
                       every_checkpoint: bool = False, method: Literal["zero", "mean", "resample"] = "zero",
                       device: str = "cpu", plot: bool = True) -> dict[str, pd.DataFrame]:
    """Run the full-model analyses on a study's checkpoints and write CSVs and plots under ``analyses/``.

    Args:
        study_dir: a folder written by ``clamp run`` (``results/<study>``).
        arm: the arm to analyse; default every arm without interventions.
        quiet: print nothing.
        every_checkpoint: run redundancy, additivity and composition at every checkpoint,
            not only the final one (head scores and progress measures always use every checkpoint).
        method: how layer-1 heads are ablated in the composition analysis.
        device: where to evaluate.
        plot: also write the figures.

    Returns:
        The tables by name (see :data:`TABLES`), as written to ``study_dir/analyses/<name>.csv``.
        The study's report is not rebuilt here (analysis never calls up into the report):
        ``clamp analyse`` does it, and from Python call
        :func:`clamp.analysis.report.build_report` afterwards.

    Example:
        >>> # tables = analyse_full_model("results/singh2024_full_model")
        >>> # tables["redundancy_summary"].query("metric == 'acc'")["spearman_rho"]
    """
    study_dir = Path(study_dir)
    record = read_json(study_dir / "study.json")
    if record is None:
        raise ConfigError(f"{study_dir}: no readable study.json; give a folder written by `clamp run` (results/<study>).")
    log = None if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    layers: dict[str, int] = {}
    for arm_rec in _arms(record, arm, study_dir):
        runs = _runs(study_dir, arm_rec["name"])
        if not runs:
            raise ConfigError(f"{study_dir}: arm {arm_rec['name']!r} has no checkpoints yet; run the study first.")
        layers[arm_rec["name"]] = int(arm_rec["model"]["n_layers"]) - 1
        for seed, folder in runs:
            for name, frames in analyse_run(arm_rec, seed, folder, every_checkpoint=every_checkpoint, method=method,
                                            device=device, log=log).items():
                parts[name] += frames
    tables = {name: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame() for name, frames in parts.items()}
    if not tables["redundancy"].empty:
        summary = pd.concat([tables["redundancy_summary"], _pooled(tables["redundancy"])], ignore_index=True)
        tables["redundancy_summary"] = summary.astype({"seed": "Int64", "sequences_seen": "Int64"})
    out_dir = study_dir / "analyses"
    written = write_tables(tables, out_dir)
    if plot:
        written += write_plots(tables, out_dir, layers)
    if log is not None:
        _print_summary(tables, log)
        log(f"analyses written to {out_dir} ({len(written)} files)")
    return tables


def _print_summary(tables: dict[str, pd.DataFrame], log: Any) -> None:
    s = tables["redundancy_summary"]
    if not s.empty:
        for _, row in s[(s["metric"] == "acc") & (s["scope"] == "pooled_final")].iterrows():
            log(f"{row['arm']}: keep-one-alone accuracy vs induction strength, Spearman rho = {row['spearman_rho']:.2f} "
                f"(p = {row['spearman_p']:.2g}, {row['n_heads']} heads over all seeds); knock-one-out accuracy "
                f"min {row['knock_out_min']:.3f} vs full {row['full']:.3f}")
    c = tables["composition_summary"]
    if not c.empty:
        last = c[c.groupby(["arm", "seed"])["sequences_seen"].transform("max") == c["sequences_seen"]]
        counts = last.groupby(["arm", "composition"]).size()
        for (arm, kind), n in counts.items():
            log(f"{arm}: {n} layer-1 head(s) classed {kind} (final checkpoints, all seeds)")
