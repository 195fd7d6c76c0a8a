"""The report, built from a hand-made results folder (no training): summary, plots, index page."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from clamp.analysis.report import build_report
from clamp.analysis.summary import summary_frame, write_summary
from clamp.phase import PhaseRule, crossing_time
from clamp.store import ATTENTION_HEADER, METRICS_HEADER

MODEL = {"n_layers": 2, "n_heads": 2, "d_model": 8}


def make_results(root: Path) -> Path:
    d = root / "hand"
    arms = [{"name": n, "factors": {}, "model": MODEL, "task": {"kind": "fewshot", "n_classes": 10},
             "train": {"lr": 1e-3, "batch_size": 16}, "interventions": [], "hash": n} for n in ("control", "clamped")]
    study = {"name": "hand", "seeds": [0, 1, 2], "control": "control", "comparisons": [],
             "phase": {"metric": "train/loss", "threshold": 0.4 * math.log(2), "direction": "below"},
             "alpha": 0.05, "n_sequences": 400, "arms": arms, "heatmap_heads": ["L1H0"]}
    d.mkdir()
    (d / "study.json").write_text(json.dumps(study))
    statuses = {("control", 0): "finished", ("control", 1): "finished", ("control", 2): "failed",
                ("clamped", 0): "finished", ("clamped", 1): "diverged"}  # clamped seed 2: never started
    for (arm, seed), status in statuses.items():
        rd = d / "runs" / arm / f"seed{seed}"
        rd.mkdir(parents=True)
        rec = {"arm": arm, "seed": seed, "status": status, "hash": f"{arm}{seed}", "timings": {"wall_seconds": 1.5}}
        if status == "failed":
            rec["error"] = "RuntimeError: boom\nmore"
        (rd / "run.json").write_text(json.dumps(rec))
        drop = 300 if arm == "control" else 100 + 100 * seed  # the loss steps down here
        rows = []
        for seen in range(0, 401, 100):
            loss = 0.7 if seen < drop else 0.1
            rows += [f"{seen},{seed},train/loss,{loss}\n", f"{seen},{seed},train/acc,{1 - loss}\n",
                     f"{seen},{seed},heldout_pairs/loss,{loss + 0.05}\n", f"{seen},{seed},induction/L1H0,{0.7 - loss}\n",
                     f"{seen},{seed},induction/L1H1,0.0\n", f"{seen},{seed},prev_token/L0H0,{seen / 400}\n"]
        (rd / "metrics.csv").write_text(METRICS_HEADER + "".join(rows))
        att = [f"{seen},{seed},{layer},{h},{q},{k},{1 / (q + 1)}\n" for seen in (0, 400) for layer in (0, 1)
               for h in (0, 1) for q in range(5) for k in range(q + 1)]
        (rd / "attention.csv").write_text(ATTENTION_HEADER + "".join(att))
    (d / "stats.md").write_text("### Phase-change statistics: hand\n\n- clamped: sooner, p = 0.01\n")
    (d / "stats.csv").write_text("arm,p\nclamped,0.01\n")
    return d


def test_crossing_on_known_curves():
    d = pd.DataFrame({"sequences_seen": [0, 10, 20, 30], "metric": "train/loss", "value": [0.7, 0.5, 0.2, 0.1]})
    x, y = d["sequences_seen"], d["value"]  # the report uses the statistics' one crossing function
    assert crossing_time(x, y, PhaseRule(threshold=0.277)).time == 20
    above = crossing_time(x, y, PhaseRule(threshold=0.6, direction="above"))
    assert above.first == 0 and above.relapsed and not above.event  # crossed at 0, not above 0.6 at the end
    assert not crossing_time(x, y, PhaseRule(threshold=0.05)).event


def test_summary_has_one_row_per_run_with_status(tmp_path):
    d = make_results(tmp_path)
    s = summary_frame(d).set_index(["arm", "seed"])
    assert len(s) == 6
    assert s.loc[("clamped", 2), "status"] == "pending" and s.loc[("control", 2), "status"] == "failed"
    assert s.loc[("control", 2), "error"] == "RuntimeError: boom"
    assert s.loc[("control", 0), "crossed_at"] == 300 and s.loc[("clamped", 1), "crossed_at"] == 200
    assert s.loc[("control", 0), "final_train_loss"] == pytest.approx(0.1)
    write_summary(d)
    assert pd.read_csv(d / "summary.csv").shape[0] == 6


@pytest.mark.slow
def test_report_plots_and_index(tmp_path):
    d = make_results(tmp_path)
    path = build_report(d)
    text = path.read_text()
    for stem in ("curves_train_loss", "curves_train_acc", "heldout_loss", "heads_induction", "heads_prev_token",
                 "attention_control", "attention_clamped"):
        assert (d / "plots" / f"{stem}.png").stat().st_size > 1000, stem
        assert (d / "plots" / f"{stem}.svg").is_file(), stem
        assert f"(plots/{stem}.png)" in text and f"(plots/{stem}.svg)" in text
    assert "| `control` | 2 | **failed** |" in text and "| `clamped` | 2 | **pending** |" in text
    assert "3 finished, 1 diverged, 1 failed, 1 pending" in text
    assert "[metrics.csv](runs/control/seed0/metrics.csv)" in text and "[study.json](study.json)" in text
    assert "- clamped: sooner, p = 0.01" in text and "[stats.csv](stats.csv)" in text
    # rebuilding gives the same page, and the inputs are untouched
    before = (d / "runs/control/seed0/metrics.csv").read_bytes()
    assert build_report(d).read_text() == text
    assert (d / "runs/control/seed0/metrics.csv").read_bytes() == before
