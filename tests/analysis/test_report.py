"""The report, built from a hand-made results folder (no training): summary, plots, index page."""

from __future__ import annotations


import pandas as pd
import pytest

from clamp.analysis.report import build_report
from clamp.analysis.summary import summary_frame, write_summary
from clamp.phase import PhaseRule, crossing_time
from helpers.results import make_results

MODEL = {"n_layers": 2, "n_heads": 2, "d_model": 8}




def test_crossing_on_known_curves():
    d = pd.DataFrame({"sequences_seen": [0, 10, 20, 30], "metric": "train/loss", "value": [0.7, 0.5, 0.2, 0.1]})
    x, y = d["sequences_seen"], d["value"]  # the report uses the statistics' one crossing function
    assert crossing_time(x, y, PhaseRule(threshold=0.277)).time == 20
    above = crossing_time(x, y, PhaseRule(threshold=0.6, direction="above", persist=10))
    assert above.first == 0 and above.relapsed and not above.event  # above 0.6 at 0 only: never for the span
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
