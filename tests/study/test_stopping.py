"""Stopping a run after its phase change: same phase times, same numbers up to the stop, nothing after it."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from clamp.errors import ConfigError
from clamp.model.config import ModelConfig
from clamp.execution.runner import run_study
from clamp.study.design import Arm, Study
from clamp.phase import PhaseRule
from clamp.study.keys import run_key
from clamp.phase import StopAfterPhase, stop_point
from clamp.tasks import FewShotConfig

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
RULE = PhaseRule(metric="train/loss", threshold=1.45)  # the tiny model's loss crosses it at 320-480 sequences


def study(**kw) -> Study:
    base = dict(name="tiny", arms=[Arm(name="control", model=MODEL, task=TASK, lr=3e-3, batch_size=16)],
                seeds=[0, 1, 2], n_sequences=640, eval_every=32, eval_size=16, checkpoint_every=128, phase=(RULE,))
    base.update(kw)
    return Study(**base)


def metrics(out: Path, seed: int) -> pd.DataFrame:
    return pd.read_csv(out / f"tiny/runs/control/seed{seed}/metrics.csv", dtype={"value": str})


def test_stop_point_on_hand_built_curves():
    stop = StopAfterPhase(margin=15)
    below = PhaseRule(threshold=0.27)
    assert stop_point([0, 10, 20, 30, 40], [0.7, 0.7, 0.1, 0.1, 0.1], below, stop) == (20, 40)
    # NaN never crosses; a score crosses "above"; never crossing gives (None, None)
    assert stop_point([0, 10, 20], [math.nan, 0.9, 0.9], PhaseRule(metric="m", threshold=0.5, direction="above"),
                      StopAfterPhase()) == (10, 10)
    assert stop_point([0, 10], [0.7, 0.7], below, stop) == (None, None)
    # crossed but the margin runs past the last evaluation
    assert stop_point([0, 10, 20], [0.7, 0.1, 0.1], below, stop) == (10, None)
    assert StopAfterPhase(margin=100, relative=0.5).stop_at(1000) == 1600


def test_the_stop_decision_is_the_statistics_crossing(monkeypatch):
    """The worker stops runs through clamp.phase.stop_point, and stop_point times the crossing with the very
    function the statistics use (clamp.phase.crossing_time): no second "past the threshold" anywhere."""
    import clamp.analysis.stats.phase as stats_phase
    import clamp.execution.pack as pack
    import clamp.phase as phase

    assert pack.stop_point is phase.stop_point
    assert stats_phase.crossing_time is phase.crossing_time
    calls = []
    real = phase.crossing_time
    monkeypatch.setattr(phase, "crossing_time", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert phase.stop_point([0, 10, 20], [0.7, 0.1, 0.1], PhaseRule(), StopAfterPhase()) == (10, 10)
    assert len(calls) == 1


@pytest.mark.parametrize("rule, field", [(PhaseRule(persist=1_000), "persist"), (PhaseRule(persist="end"), "persist"),
                                         (PhaseRule(outside_windows=True), "outside_windows"),
                                         (PhaseRule(relative_to="prev_token/L0H0>0.5"), "relative_to")])
def test_stopping_refuses_a_primary_rule_it_cannot_honour(rule, field):
    with pytest.raises(ConfigError, match=f"stop_after_phase.*{field}"):
        study(phase=(rule,), stop_after_phase=StopAfterPhase(margin=64))
    # the same rule as a secondary rule is fine: the stop watches the primary one only
    study(phase=(RULE, rule), stop_after_phase=StopAfterPhase(margin=64))


def test_stop_after_phase_validation():
    with pytest.raises(ConfigError, match="margin"):
        StopAfterPhase(margin=-1)
    with pytest.raises(ConfigError, match="relative"):
        StopAfterPhase(relative=-0.5)


def test_run_keys_change_only_when_stopping_is_set():
    s = study()
    assert run_key(s, s.arms[0], 0) == run_key(replace(s, stop_after_phase=None), s.arms[0], 0)
    stopped = replace(s, stop_after_phase=StopAfterPhase(margin=64))
    assert run_key(stopped, s.arms[0], 0) != run_key(s, s.arms[0], 0)
    assert run_key(stopped, s.arms[0], 0) != run_key(replace(stopped, stop_after_phase=StopAfterPhase(margin=32)), s.arms[0], 0)


@pytest.mark.slow
def test_stopped_runs_match_runs_trained_to_the_end(tmp_path):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert run_study(study(), out=full, jobs=1, quiet=True, analyse=True) == 0
    s = study(stop_after_phase=StopAfterPhase(margin=64))
    assert run_study(s, out=stopped, jobs=1, quiet=True, analyse=True) == 0

    stops = {}
    for seed in (0, 1, 2):
        a, b = metrics(full, seed), metrics(stopped, seed)
        loss = a[a.metric == "train/loss"]
        crossed_at, stop_at = stop_point(loss.sequences_seen.tolist(), loss.value.astype(float).tolist(),
                                         RULE, s.stop_after_phase)
        assert stop_at is not None and stop_at < 640, "the test needs every run to stop early"
        stops[seed] = stop_at
        rec = json.loads((stopped / f"tiny/runs/control/seed{seed}/run.json").read_text())
        assert rec["status"] == "finished" and rec["sequences_seen"] == stop_at
        assert rec["stopped_early"]["at"] == stop_at and rec["stopped_early"]["crossed_at"] == crossed_at
        # the curve ends at the stop, and every number up to it is the same text, bit for bit
        assert b.sequences_seen.max() == stop_at
        head = a[a.sequences_seen <= stop_at].reset_index(drop=True)
        pd.testing.assert_frame_equal(head, b.reset_index(drop=True))
        ckpts = sorted(int(p.stem) for p in (stopped / f"tiny/runs/control/seed{seed}/checkpoints").glob("*.pt"))
        assert ckpts[-1] == stop_at and all(c <= stop_at for c in ckpts)
    assert len(set(stops.values())) > 1, "runs of one pack should stop at different points"

    # phase times: the stopped runs crossed (not censored), at the same time as the runs trained to the end
    pa = pd.read_csv(full / "tiny/phase_times.csv")
    pb = pd.read_csv(stopped / "tiny/phase_times.csv")
    key = ["arm", "seed", "metric", "estimator"]
    ta = pa[pa.estimator == "threshold"].set_index(key).sort_index()
    tb = pb[pb.estimator == "threshold"].set_index(key).sort_index()
    assert tb["event"].all() and not tb["censored"].any() and tb["included"].all()
    pd.testing.assert_series_equal(ta["time"], tb["time"])


@pytest.mark.slow
def test_stopping_run_resumes_after_an_interruption(tmp_path, monkeypatch):
    """Killed after the first checkpoint: the resumed pack still stops every run where it would have."""
    s = study(stop_after_phase=StopAfterPhase(margin=64))
    assert run_study(s, out=tmp_path / "once", jobs=1, quiet=True, analyse=False) == 0
    import clamp.execution.pack as pack

    real = pack._record_attention
    calls = {"n": 0}

    def crash_on_third_checkpoint(trainer, runs, seen):
        calls["n"] += 1
        if calls["n"] == 4:  # checkpoints at 0, 128, 256, then 384 (after seed 1 crossed at 320)
            raise KeyboardInterrupt
        real(trainer, runs, seen)

    monkeypatch.setattr(pack, "_record_attention", crash_on_third_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_study(s, out=tmp_path / "twice", jobs=1, quiet=True, analyse=False)
    monkeypatch.setattr(pack, "_record_attention", real)
    assert run_study(s, out=tmp_path / "twice", jobs=1, quiet=True, analyse=False) == 0
    for seed in (0, 1, 2):
        a, b = metrics(tmp_path / "once", seed), metrics(tmp_path / "twice", seed)
        pd.testing.assert_frame_equal(a, b)
        ra = json.loads((tmp_path / f"once/tiny/runs/control/seed{seed}/run.json").read_text())
        rb = json.loads((tmp_path / f"twice/tiny/runs/control/seed{seed}/run.json").read_text())
        assert ra["stopped_early"] == rb["stopped_early"]
