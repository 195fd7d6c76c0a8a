"""Scans: expansion into arms, ranking that recovers a planted effect, heatmap and stats.md section."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import clamp
from clamp.analysis.stats.pipeline import compute_statistics
from clamp.analysis.stats.pipeline import compare_arms
from clamp.analysis.stats.runs import StudySpec
from clamp.analysis.stats.scan import heatmap_cells, rank_components
from clamp.errors import ConfigError
from clamp.interventions import knockout_heads
from clamp.interventions.spec import Window
from clamp.interventions.when import When
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study
from clamp.study.checks import validate_study
from clamp.study.scan import Component, heads, layers, scan, subcircuits
from clamp.tasks import FewShotConfig

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def test_scan_expands_to_expected_arms():
    base = Arm(name="control", model=MODEL, task=TASK, interventions=[knockout_heads(layer=1, keep=[0])])
    arms = scan(control=base, components=heads(layer=0, n_heads=2))
    assert [a.name for a in arms] == ["control", "ko__L0H0", "ko__L0H1"]
    ko = arms[2].interventions[-1]
    assert ko.site == "blocks.0.attn.hook_v" and ko.heads == (1,) and ko.windows == (Window(),)
    assert arms[2].interventions[0] == base.interventions[0] and arms[2].model == base.model and arms[2].lr == base.lr
    # whole layers, named subcircuits (one knockout per layer touched), triggered windows, pattern clamps
    assert [a.name for a in scan(control=base, components=layers(n_layers=2, n_heads=2), include_control=False)] \
        == ["ko__L0", "ko__L1"]
    w = Window(start=When("train/loss", "<", 0.5))
    sub = scan(control=base, components=subcircuits({"pair": [(0, 1), (1, 0)]}), windows=[w], prefix="sub")
    ivs = sub[1].interventions[1:]
    assert [iv.name for iv in ivs] == ["sub_pair_L0", "sub_pair_L1"] and all(iv.windows == (w,) for iv in ivs)
    uni = scan(control=base, components=heads(layer=1, n_heads=2), action="uniform", prefix="uni")
    assert uni[1].interventions[-1].pattern == "uniform" and uni[1].interventions[-1].heads == (0,)
    study = Study(name="s", arms=scan(control=base, components=heads(layer=0, n_heads=2)), n_sequences=64,
                  eval_every=32, eval_size=16)
    validate_study(study)
    assert clamp.scan is scan
    with pytest.raises(ConfigError, match="action"):
        scan(control=base, components=heads(layer=0, n_heads=2), action="zap")
    with pytest.raises(ConfigError):
        Component(name="a__b", heads=((0, 0),))


def _planted(rng: np.random.Generator, n_seeds: int = 8) -> pd.DataFrame:
    """Simulated phase times: control ~ 1e5; L0H2 knocked out: x3 slower; L1H1: x1.6 and 3 of 8 censored at 4e5."""
    rows = []
    arms = {"control": 1.0, **{f"ko__L{l}H{h}": 1.0 for l in range(2) for h in range(4)}}
    arms["ko__L0H2"], arms["ko__L1H1"] = 3.0, 1.6
    for arm, factor in arms.items():
        for s in range(n_seeds):
            t = factor * 1e5 * float(np.exp(rng.normal(0, 0.15)))
            event = True
            if arm == "ko__L1H1" and s < 3:
                t, event = 4e5, False
            rows.append({"arm": arm, "seed": s, "rule_index": 0, "estimator": "threshold", "time": t, "event": event,
                         "included": True, "relapsed": False, "status": "finished"})
    return pd.DataFrame(rows)


def _ranked(table: pd.DataFrame, correction: str) -> pd.DataFrame:
    """The scan family's stats rows (compared and corrected by the pipeline), ranked."""
    spec = StudySpec.from_dict({"name": "scan", "seeds": list(range(8)), "control": "control",
                                "arms": [{"name": a} for a in dict.fromkeys(table["arm"])]})
    stats_df = compare_arms(table, spec, n_boot=200, correction=correction, estimators=("threshold",))
    assert set(stats_df["family"]) == {"scan ko"}  # one family: the scan's components against the control
    return rank_components(stats_df)


@pytest.mark.parametrize("correction", ["holm", "bh"])
def test_ranking_recovers_planted_effect(correction):
    false_positives = 0
    for rep in range(4):  # four simulated scans: the planted components come first and significant in every one
        ranked = _ranked(_planted(np.random.default_rng(rep)), correction)
        assert list(ranked["component"][:2]) == ["L0H2", "L1H1"], rep
        assert ranked.loc[0, "ratio"] > 2.2 and ranked.loc[0, "significant"] and ranked.loc[1, "significant"]
        false_positives += int(ranked["significant"][2:].sum())
        assert (ranked["family_size"] == 8).all() and list(ranked["rank"]) == list(range(1, 9))
    assert false_positives <= 1  # 24 null comparisons, corrected over each scan
    ranked = _ranked(_planted(np.random.default_rng(1)), correction)
    val, sig, layers_, H = heatmap_cells(ranked)
    assert layers_ == [0, 1] and H == 4 and sig[0, 2] and sig[1, 1] and sig.sum() == 2
    assert val[0, 2] == pytest.approx(np.log2(ranked.loc[0, "ratio"]))


def test_pipeline_writes_scan_csv_heatmap_and_stats_md(tmp_path):
    table = _planted(np.random.default_rng(1), n_seeds=4)
    d = tmp_path / "study"
    arm_names = list(dict.fromkeys(table["arm"]))
    (d / "runs").mkdir(parents=True)
    (d / "study.json").write_text(json.dumps({"name": "demo", "seeds": list(range(4)), "control": "control",
                                              "arms": [{"name": a} for a in arm_names]}))
    X = np.arange(0, 4.5e5, 1e4)
    for r in table.itertuples():
        rd = d / "runs" / r.arm / f"seed{r.seed}"
        rd.mkdir(parents=True)
        loss = np.where(X >= r.time, 0.1, 0.7) if r.event else np.full(X.size, 0.7)
        pd.DataFrame({"sequences_seen": X.astype(int), "run": r.seed, "metric": "train/loss", "value": loss}) \
            .to_csv(rd / "metrics.csv", index=False)
        (rd / "run.json").write_text(json.dumps({"status": "finished"}))
    res = compute_statistics(d, quiet=True, n_boot=200)
    assert (d / "scan_ko.csv").is_file() and (d / "plots/scan_ko_heatmap.png").is_file()
    ranked = pd.read_csv(d / "scan_ko.csv")
    assert set(ranked["component"][:2]) == {"L0H2", "L1H1"}
    md = (d / "stats.md").read_text()
    assert "## Scans" in md and "2. L" in md and "scan_ko_heatmap.png" in md and md == res.markdown
