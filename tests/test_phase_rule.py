"""The phase rule (issue 12 "A crossing that does not last", issue 13 item 4): persistence, relapse, windows, one home."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clamp.errors import ConfigError
from clamp.analysis.stats.pipeline import compute_statistics
from clamp.phase import LN2, THRESHOLD, PhaseRule, arm_windows, crossing_time
from helpers import ROOT



def test_one_home_for_phase_rule_ln2_and_the_crossing_function():
    out = subprocess.run(["grep", "-rn", r"class PhaseRule\|^LN2\|def crossing", "clamp"], cwd=ROOT,
                         capture_output=True, text=True).stdout.splitlines()
    assert len([l for l in out if "class PhaseRule" in l]) == 1, out
    assert len([l for l in out if ":LN2" in l]) == 1, out
    assert len([l for l in out if "def crossing" in l]) == 1, out
    assert all(l.startswith("clamp/phase.py:") for l in out), out
    import clamp

    assert PhaseRule is clamp.PhaseRule and clamp.LN2 is LN2 and THRESHOLD == 0.4 * LN2
    assert not hasattr(__import__("clamp.analysis.stats.survival", fromlist=["x"]), "censored_data")
    assert not hasattr(__import__("clamp.analysis.stats", fromlist=["x"]), "analyse_study")


def test_study_json_of_an_unchanged_rule_is_unchanged():
    assert PhaseRule().to_dict() == {"metric": "train/loss", "threshold": THRESHOLD, "direction": "below"}
    r = PhaseRule(persist="end", outside_windows=True)
    assert PhaseRule.from_dict(r.to_dict()) == r


def test_persistence_span_and_end():
    x = [0, 10, 20, 30, 40, 50]
    y = [0.7, 0.1, 0.7, 0.1, 0.1, 0.1]  # dips at 10, back at 20, down for good from 30
    assert crossing_time(x, y, PhaseRule()).time == 10  # Singh's rule: first crossing (the run ends below)
    assert crossing_time(x, y, PhaseRule(persist=15)).time == 30
    assert crossing_time(x, y, PhaseRule(persist="end")).time == 30
    c = crossing_time(x, y, PhaseRule(persist="end"))
    assert c.event and c.first == 10 and "did not last" in c.note
    # A crossing too near the end to be confirmed over the span is not a phase change (yet): it is decidable only
    # W sequences later, so the run is censored at its last evaluation minus W.
    c = crossing_time([0, 10, 20, 30], [0.7, 0.7, 0.1, 0.1], PhaseRule(persist=15))
    assert not c.event and c.time == 15 and "not confirmed" in c.note


def test_a_relapse_after_the_span_does_not_undo_the_phase_change():
    # decided at 10 + W: what happens after does not change it (it is flagged)
    c = crossing_time([0, 10, 20, 30, 40], [0.7, 0.1, 0.1, 0.7, 0.72], PhaseRule(persist=10))
    assert c.event and c.relapsed and c.first == 10 and c.time == 10
    # a crossing that does not last the span is not a phase change
    c = crossing_time([0, 10, 20, 30, 40], [0.7, 0.1, 0.7, 0.72, 0.7], PhaseRule(persist=10))
    assert not c.event and c.relapsed and c.first == 10 and c.time == 30 and "never stayed" in c.note


def test_outside_windows_ignores_the_clamps_own_evaluations():
    arm = {"interventions": [{"windows": [{"start": 0, "stop": 5000}]}, {"windows": [{"start": 0, "stop": None}]}]}
    assert arm_windows(arm) == [(0.0, 5000.0)]  # an always-on knockout is configuration, not a window
    x = np.arange(0, 20_001, 512.0)
    y = np.where(x < 5000, 0.03, 0.72)
    c = crossing_time(x, y, PhaseRule(outside_windows=True), windows=arm_windows(arm))
    assert not c.event and not c.relapsed and c.note == "never crossed"
    assert crossing_time(x, y, PhaseRule(), windows=arm_windows(arm)).relapsed


def test_parse_and_bad_rules():
    r = PhaseRule.parse("loss/second_repeat<0.277")
    assert (r.metric, r.threshold, r.direction) == ("loss/second_repeat", 0.277, "below")
    assert PhaseRule.parse("induction/L1H0 > 0.5").direction == "above"
    for bad in ("train/loss=0.2", "train/loss<abc", "<0.2"):
        with pytest.raises(ConfigError, match="METRIC<THRESHOLD"):
            PhaseRule.parse(bad)
    with pytest.raises(ConfigError, match="persist"):
        PhaseRule(persist=-1)
    with pytest.raises(ConfigError, match="direction"):
        PhaseRule(direction="up")


def _windows_study(root: Path) -> Path:
    """The issue's case: a match clamp in a window [0, 5000) drives the loss to 0.03 at 4,512; after the release it
    jumps back to 1.0–1.25 and ends at the control's 0.72 (3 seeds per arm)."""
    x = np.arange(0, 20_001, 512.0)
    x[-1] = 20_000
    rng = np.random.default_rng(0)
    window = {"kind": "pattern_clamp", "name": "induction_L1H0", "windows": [{"start": 0, "stop": 5000}]}
    study = {"name": "windows", "seeds": [0, 1, 2], "control": "control", "phase": PhaseRule().to_dict(),
             "arms": [{"name": "control", "interventions": []}, {"name": "windowed", "interventions": [window]}]}
    root.mkdir(parents=True)
    (root / "study.json").write_text(json.dumps(study))
    for arm in ("control", "windowed"):
        for seed in range(3):
            if arm == "control":
                y = 0.72 + 0.4 * np.exp(-x / 2000)
            else:
                y = np.where(x < 5000, np.maximum(0.03, 0.69 - x / 4512 * 0.66),
                             np.interp(x, [5000, 8000, 20_000], [1.25, 1.0, 0.72]))
            y = y + rng.normal(0, 0.005, x.size)
            d = root / "runs" / arm / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "run.json").write_text(json.dumps({"arm": arm, "seed": seed, "status": "finished"}))
            pd.DataFrame({"sequences_seen": x, "run": seed, "metric": "train/loss", "value": y}).to_csv(
                d / "metrics.csv", index=False)
    return root


def test_windowed_clamp_crossing_is_flagged_and_outside_windows_times_the_real_change(tmp_path: Path):
    root = _windows_study(tmp_path / "windows")
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    thr = res.phase_times[(res.phase_times.estimator == "threshold") & (res.phase_times.arm == "windowed")]
    # Inside the window the clamp holds the loss below the threshold for longer than the span: under a rule that does
    # not step outside windows that is a phase change, flagged as inside a window and as relapsed afterwards.
    assert thr["event"].all() and thr["relapsed"].all() and thr["in_window"].all() and (thr["time"] < 5000).all()
    assert any(w.startswith("Phase times inside an intervention window") and "outside_windows=True" in w
               for w in res.warnings)
    assert any(w.startswith("Relapsed after their phase change") and "windowed/seed0 (phase change at" in w
               for w in res.warnings)
    # Outside the windows the arm never crossed at all: no relapse, no phase change.
    res2 = compute_statistics(root, quiet=True, n_boot=200, plots=False, phase=[PhaseRule(outside_windows=True)])
    thr2 = res2.phase_times[(res2.phase_times.estimator == "threshold") & (res2.phase_times.arm == "windowed")]
    assert not thr2["relapsed"].any() and not thr2["event"].any()
    assert res2.outputs[0].parent.name == "stats_train-loss_lt_0.277_outside"
