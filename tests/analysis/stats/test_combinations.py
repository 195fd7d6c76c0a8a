"""Phase times and the primary test when features combine: per-arm budgets with relapses, stopped runs, triggered
windows with ``outside_windows``, early censoring under ``relative_to``.  Each case gave a wrong number before the
phase time was made decidable and the test's horizon taken from the design (see docs/statistics.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clamp.analysis.stats.compare import compare_samples
from clamp.analysis.stats.pipeline import compute_statistics
from clamp.phase import PhaseRule, crossing_time, run_windows

STEP = 2_000


def _write(root: Path, study: dict, curves: dict[tuple[str, int], dict[str, np.ndarray]],
           records: dict[tuple[str, int], dict] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "study.json").write_text(json.dumps(study))
    for (arm, seed), metrics in curves.items():
        d = root / "runs" / arm / f"seed{seed}"
        d.mkdir(parents=True)
        rec = {"arm": arm, "seed": seed, "status": "finished", **(records or {}).get((arm, seed), {})}
        (d / "run.json").write_text(json.dumps(rec))
        rows = [pd.DataFrame({"sequences_seen": x, "run": seed, "metric": name, "value": y})
                for name, (x, y) in metrics.items()]
        pd.concat(rows).to_csv(d / "metrics.csv", index=False)
    return root


def _curve(drop: float, end: float, *, relapse: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """0.70 on the plateau, 0.05 from ``drop``, back to 0.60 from ``relapse``; evaluated every 2,000 to ``end``."""
    x = np.arange(0, end + 1, STEP, dtype=float)
    y = np.where(x < drop, 0.70, 0.05)
    if relapse is not None:
        y = np.where(x >= relapse, 0.60, y)
    return x, y


def test_identical_curves_with_per_arm_budgets_and_a_late_relapse_are_not_called_different(tmp_path):
    # Run for run the two arms are the same curve; the control is trained 2.5x longer and relapses at 200k (the
    # transient pattern).  Before: the control's runs were censored (relapsed), the clamped arm's were not, and
    # stats.md said "at least 5.0x sooner, p = 0.008".
    study = {"name": "budgets", "seeds": list(range(5)), "control": "control", "eval_every": STEP,
             "n_sequences": 120_000, "arms": [{"name": "control", "n_sequences": 300_000}, {"name": "clamped"}]}
    curves = {}
    for seed in range(5):
        drop = 50_000 + 5_000 * seed
        curves[("control", seed)] = {"train/loss": _curve(drop, 300_000, relapse=200_000)}
        curves[("clamped", seed)] = {"train/loss": _curve(drop, 120_000)}
    res = compute_statistics(_write(tmp_path / "b", study, curves), quiet=True, n_boot=200, plots=False)
    row = res.stats[res.stats.headline].iloc[0]
    assert row.crossed_arm == 5 and row.crossed_reference == 5 and row.p > 0.5
    assert row.ratio == pytest.approx(1.0) and row.horizon == 120_000 - 3 * STEP
    assert "sooner" not in res.sentences[0] and "at the same time as control (time ratio 1)" in res.sentences[0]
    assert "5 relapsed after it" in res.sentences[0]


def test_a_stopped_run_that_relapses_at_its_stop_stays_a_phase_change(tmp_path):
    # The clamped arm's seed 0 stopped 50k after its phase change; at its stop evaluation the loss is back above
    # the threshold.  Before: censored there, which moved the comparison from p = 0.0079 to 1.0.
    study = {"name": "stops", "seeds": list(range(5)), "control": "control", "eval_every": STEP,
             "n_sequences": 400_000, "stop_after_phase": {"margin": 50_000, "relative": 0.0},
             "arms": [{"name": "control"}, {"name": "clamped"}]}
    curves, records = {}, {}
    for seed in range(5):
        curves[("control", seed)] = {"train/loss": _curve(300_000 + 5_000 * seed, 400_000)}
        drop = 110_000 + 2_000 * seed
        stop = drop + 50_000
        x, y = _curve(drop, stop, relapse=stop if seed == 0 else None)
        curves[("clamped", seed)] = {"train/loss": (x, y)}
        records[("clamped", seed)] = {"stopped_early": {"at": stop, "crossed_at": drop}}
    res = compute_statistics(_write(tmp_path / "s", study, curves, records), quiet=True, n_boot=200, plots=False)
    row = res.stats[res.stats.headline].iloc[0]
    assert row.crossed_arm == 5 and row.p == pytest.approx(2 / 252)
    times = res.phase_times[(res.phase_times.estimator == "threshold") & (res.phase_times.arm == "clamped")]
    assert (times["stopped_at"] == times["time"] + 50_000).all()


def test_outside_windows_uses_each_runs_triggered_window(tmp_path):
    # A match clamp opened by a trigger (detected at 10k, +2k delay, for 18k sequences) drives the loss to 0.05
    # inside [12k, 30k); the real drop comes at 80k.  Before: the window was unknown to the statistics, and the
    # clamp's own effect was timed as the phase change (12k) under "outside intervention windows".
    when = {"when": "train/loss", "op": "<", "threshold": 0.6, "delay": 2_000, "duration": 18_000}
    window = {"kind": "pattern_clamp", "name": "match", "windows": [{"start": when, "stop": None}]}
    study = {"name": "trig", "seeds": [0, 1, 2], "control": "control", "eval_every": STEP, "n_sequences": 150_000,
             "phase": PhaseRule(outside_windows=True).to_dict(),
             "arms": [{"name": "control"}, {"name": "closed_loop", "interventions": [
                 {"kind": "knockout", "name": "ko", "windows": [{"start": 0, "stop": None}]}, window]}]}
    curves = {}
    for seed in range(3):
        x, y = _curve(80_000 + 2_000 * seed, 150_000)
        detected = 10_000 + 2_000 * seed
        inside = (x >= detected + 2_000) & (x < detected + 20_000)
        trig = (x, (x >= detected).astype(float))
        curves[("closed_loop", seed)] = {"train/loss": (x, np.where(inside, 0.05, y)), "trigger/match/start": trig}
        curves[("control", seed)] = {"train/loss": (x, y)}
    res = compute_statistics(_write(tmp_path / "t", study, curves), quiet=True, n_boot=200, plots=False)
    times = res.phase_times[(res.phase_times.estimator == "threshold") & (res.phase_times.arm == "closed_loop")]
    assert times.sort_values("seed")["time"].tolist() == [80_000, 82_000, 84_000]
    assert run_windows([window], {"trigger/match/start": 10_000}) == [(12_000.0, 30_000.0)]
    # an always-on intervention is the arm's configuration, and the rule's text says so
    assert "on for the whole run are part of their arm, not windows to step outside of: closed_loop (ko)" in res.markdown
    # and the same curve without the window known would have been timed at the clamp
    x, y = curves[("closed_loop", 0)]["train/loss"]
    assert crossing_time(x, y, PhaseRule(outside_windows=True, persist=6_000)).time == 12_000


def test_a_phase_change_after_a_triggered_release_is_not_called_inside_the_window(tmp_path):
    # The full scan's match_release: a clamp from 0 released when the run's loss first falls below the threshold
    # (detected at 50k), then the run crosses again for good at 500k.  Before: the trigger rows were read only for
    # rules stepping outside windows, so under the plain rule the window looked open to the end and every phase
    # time was flagged "inside an intervention window" (a false caveat in stats.md, in_window true in the CSV).
    when = {"when": "train/loss", "op": "<", "threshold": 0.277, "delay": 0, "duration": None}
    release = {"kind": "pattern_clamp", "name": "match_release", "windows": [{"start": 0, "stop": when}]}
    study = {"name": "release", "seeds": [0, 1, 2], "control": "control", "eval_every": STEP, "n_sequences": 700_000,
             "phase": PhaseRule().to_dict(), "arms": [{"name": "control"},
                                                      {"name": "match_release", "interventions": [release]}]}
    curves = {}
    for seed in range(3):
        x, y = _curve(500_000 + 2_000 * seed, 700_000)
        curves[("control", seed)] = {"train/loss": (x, y)}
        curves[("match_release", seed)] = {"train/loss": (x, y), "trigger/match_release/stop": (x, (x >= 50_000) * 1.0)}
    res = compute_statistics(_write(tmp_path / "r", study, curves), quiet=True, n_boot=200, plots=False)
    times = res.phase_times[(res.phase_times.estimator == "threshold") & (res.phase_times.arm == "match_release")]
    assert times["event"].all() and not times["in_window"].any()
    assert not any(w.startswith("Phase times inside an intervention window") for w in res.warnings)


def test_one_early_censored_run_does_not_collapse_the_test():
    # Relative to a per-run trigger: A crosses 1-5k after it, B 50-80k after, and one more B run was triggered
    # 2k before its end (censored at a relative 2k).  Before: the horizon was the earliest censoring (2k), which
    # tied every run at the top: p went from 0.016 to 0.44.
    a = [1_000, 2_000, 3_000, 4_000, 5_000]
    b = [50_000, 60_000, 70_000, 80_000, 2_000]
    b_event = [True, True, True, True, False]
    budget, refs = 300_000, np.array([10_000, 20_000, 30_000, 40_000, 298_000])
    c = compare_samples(a, [True] * 5, b, b_event, n_boot=200, a_limits=budget - 30_000,
                        b_limits=budget - refs)
    without = compare_samples(a, [True] * 5, b[:4], b_event[:4], n_boot=200)
    assert without.p == pytest.approx(0.0159, abs=1e-4)
    assert c.p < 0.02 and c.n_ranked == 9
