"""End to end: a tiny study through the runner, then ``analyse_full_model`` on its folder."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
import torch

STUDY = textwrap.dedent("""
    from clamp.model.config import ModelConfig
    from clamp.study.design import Arm, Study
    from clamp.tasks import FewShotConfig

    STUDY = Study(
        name="tiny_full",
        arms=[Arm(name="full", model=ModelConfig(n_layers=2, n_heads=2, d_model=8),
                  task=FewShotConfig(n_classes=10, d_in=8), lr=1e-3, batch_size=16)],
        seeds=[0, 1], n_sequences=320, eval_every=160, eval_size=64, checkpoint_every=160, control=None,
    )
""")

COLUMNS = {
    "head_scores": ["arm", "seed", "sequences_seen", "layer", "head", "metric", "value"],
    "redundancy": ["arm", "seed", "sequences_seen", "layer", "head", "condition", "induction_strength", "loss", "acc"],
    "redundancy_summary": ["arm", "seed", "sequences_seen", "layer", "metric", "n_heads", "spearman_rho", "spearman_p",
                           "full", "knock_out_min", "knock_out_mean", "keep_alone_min", "keep_alone_max", "scope"],
    "additivity": ["arm", "seed", "sequences_seen", "layer", "n_heads", "added_head", "added_strength", "heads_kept",
                   "loss", "acc"],
    "composition": ["arm", "seed", "sequences_seen", "layer", "head", "ablation", "loss", "acc", "delta_loss", "delta_acc"],
    "composition_summary": ["arm", "seed", "sequences_seen", "layer", "head", "delta_loss_full", "delta_loss_value_path",
                            "delta_loss_pattern_path", "composition"],
    "progress": ["arm", "seed", "sequences_seen", "clamp", "layer", "head", "loss", "acc"],
}


@pytest.mark.slow
def test_tiny_study_run_then_analysed(tmp_path):
    from clamp.analysis.posthoc import analyse_full_model
    from clamp.cli import main
    from clamp.execution.runner import run_study
    from clamp.study.load import load_study

    torch.set_num_threads(1)
    path = tmp_path / "tiny_full.py"
    path.write_text(STUDY)
    assert run_study(load_study(path), out=tmp_path / "results", jobs=1, quiet=True, analyse=False) == 0
    study_dir = tmp_path / "results" / "tiny_full"
    tables = analyse_full_model(study_dir, quiet=True)

    out = study_dir / "analyses"
    for name, cols in COLUMNS.items():
        df = pd.read_csv(out / f"{name}.csv")
        assert list(df.columns) == cols, name
        assert len(df) and list(tables[name].columns) == cols
        assert set(df["arm"]) == {"full"}
    for stem in ("induction_strength", "redundancy", "additivity", "composition", "progress"):
        for ext in ("png", "svg"):
            assert (out / "plots" / f"{stem}_full.{ext}").stat().st_size > 0

    scores = tables["head_scores"]
    assert sorted(scores["seed"].unique()) == [0, 1] and sorted(scores["sequences_seen"].unique()) == [0, 160, 320]
    # The analyses rebuild the run's own evaluation set: the unclamped loss at the last checkpoint is the
    # training loop's train/loss there, and the head scores match its induction metrics.
    metrics = pd.read_csv(study_dir / "runs" / "full" / "seed1" / "metrics.csv")
    at_end = metrics[metrics["sequences_seen"] == 320].set_index("metric")["value"]
    prog = tables["progress"]
    none = prog[(prog["seed"] == 1) & (prog["sequences_seen"] == 320) & (prog["clamp"] == "none")]["loss"].iloc[0]
    assert none == pytest.approx(at_end["train/loss"], abs=1e-5)
    ind = scores[(scores["seed"] == 1) & (scores["sequences_seen"] == 320) & (scores["metric"] == "induction_strength")]
    for h, v in zip(ind["head"], ind["value"]):
        assert v == pytest.approx(at_end[f"induction/L1H{h}"], abs=1e-5)
    add = tables["additivity"]
    full = tables["redundancy"].query("condition == 'full'").set_index("seed")["loss"]
    for seed, g in add.groupby("seed"):
        assert g.sort_values("n_heads")["loss"].iloc[-1] == pytest.approx(full[seed], abs=1e-6)

    assert main(["analyse", str(study_dir), "--quiet", "--no-plots"]) == 0
