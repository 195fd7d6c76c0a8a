"""Stopping a run after its phase change: same phase times, same numbers up to the stop, nothing after it."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clamp.errors import ConfigError
from clamp.model.config import ModelConfig
from clamp.execution.runner import run_study
from clamp.study.design import Arm, Study
from clamp.phase import PhaseRule
from clamp.study.keys import run_key
from clamp.phase import StopAfterPhase, crossing_time, stop_point
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
    below = PhaseRule(threshold=0.27, persist=10)
    assert stop_point([0, 10, 20, 30, 40], [0.7, 0.7, 0.1, 0.1, 0.1], below, stop) == (20, 40)
    # NaN never crosses; a score crosses "above"; never crossing gives (None, None)
    assert stop_point([0, 10, 20], [math.nan, 0.9, 0.9], PhaseRule(metric="m", threshold=0.5, direction="above"),
                      StopAfterPhase()) == (10, 10)
    assert stop_point([0, 10], [0.7, 0.7], below, stop) == (None, None)
    # decided, but the margin runs past the last evaluation
    assert stop_point([0, 10, 20], [0.7, 0.1, 0.1], below, stop) == (10, None)
    # a crossing not yet confirmed over the span does not stop anything
    assert stop_point([0, 10, 20], [0.7, 0.7, 0.1], below, StopAfterPhase(margin=10)) == (None, None)
    assert StopAfterPhase(margin=100, relative=0.5).stop_at(1000) == 1600


def _noisy(seed: int, drop: int) -> tuple[list[int], list[float]]:
    """A curve on the ln 2 plateau with noisy dips below the threshold, a real drop at ``drop``, a late relapse."""
    rng = np.random.default_rng(seed)
    x = np.arange(0, 300_001, 1000)
    y = np.where(x < drop, 0.69, 0.05) + rng.normal(0, 0.01, x.size)
    y[rng.choice(np.flatnonzero(x < drop - 5000), 3, replace=False)] = 0.25  # blips below 0.277
    y[x >= drop + 150_000] = 0.6  # relapses long after the phase change
    return x.tolist(), y.tolist()


@pytest.mark.parametrize("rule", [PhaseRule(persist=3000), PhaseRule(persist=10_000),
                                  PhaseRule(persist=3000, outside_windows=True)])
def test_a_stopped_run_has_the_phase_time_it_would_have_had_trained_on(rule):
    """Blips below the threshold, a stop margin, a relapse after the stop: the stopped curve and the whole curve
    give the same phase time (the old stop decision stopped a margin after the first blip)."""
    stop = StopAfterPhase(margin=max(rule.span, 20_000), relative=0.25)
    windows = [(40_000.0, 60_000.0)] if rule.outside_windows else []
    for seed in range(20):
        x, y = _noisy(seed, drop=80_000 + 2000 * seed)
        whole = crossing_time(x, y, rule, windows=windows)
        t, stop_at = stop_point(x, y, rule, stop, windows=windows)
        assert whole.event and t == whole.time and t >= 80_000
        cut = [i for i, v in enumerate(x) if v <= stop_at]
        stopped = crossing_time([x[i] for i in cut], [y[i] for i in cut], rule, windows=windows)
        assert stopped.event and stopped.time == whole.time


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


def test_stopping_honours_persistence_windows_and_reference_events():
    for rule in (PhaseRule(persist=1_000), PhaseRule(outside_windows=True),
                 PhaseRule(relative_to="prev_token/L0H0>0.5")):
        study(phase=(rule,), stop_after_phase=StopAfterPhase(margin=1_000))


def test_stopping_refuses_what_it_cannot_honour():
    with pytest.raises(ConfigError, match="stop_after_phase.*end of the run"):
        study(phase=(PhaseRule(persist="end"),), stop_after_phase=StopAfterPhase(margin=64))
    # the default span is three evaluations (96 sequences here): a shorter margin would stop undecided runs
    with pytest.raises(ConfigError, match=r"margin=64\) is shorter than .* \(96 sequences\)"):
        study(stop_after_phase=StopAfterPhase(margin=64))
    study(phase=(RULE, PhaseRule(persist="end")), stop_after_phase=StopAfterPhase(margin=96))  # a secondary rule
    with pytest.raises(ConfigError, match="persist='end'.*budgets differ"):
        study(phase=(PhaseRule(persist="end"),), arms=[Arm(name="control", model=MODEL, task=TASK, batch_size=16),
                                                       Arm(name="long", model=MODEL, task=TASK, batch_size=16,
                                                           n_sequences=1280)])


def test_stop_after_phase_validation():
    with pytest.raises(ConfigError, match="margin"):
        StopAfterPhase(margin=-1)
    with pytest.raises(ConfigError, match="relative"):
        StopAfterPhase(relative=-0.5)


def test_run_keys_change_only_when_stopping_is_set():
    s = study()
    assert run_key(s, s.arms[0], 0) == run_key(replace(s, stop_after_phase=None), s.arms[0], 0)
    stopped = replace(s, stop_after_phase=StopAfterPhase(margin=96))
    assert run_key(stopped, s.arms[0], 0) != run_key(s, s.arms[0], 0)
    assert run_key(stopped, s.arms[0], 0) != run_key(replace(stopped, stop_after_phase=StopAfterPhase(margin=128)), s.arms[0], 0)
    # the stop decision's version is part of the key: runs stopped by the old decision are not reused
    from clamp.study.keys import stop_after

    assert stop_after(stopped)["decision"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("rule", [RULE, PhaseRule(metric="train/loss", threshold=1.45, persist=160)],
                         ids=["default-span", "persist"])
def test_stopped_runs_match_runs_trained_to_the_end(tmp_path, rule):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert run_study(study(phase=(rule,), n_sequences=960), out=full, jobs=1, quiet=True, analyse=True) == 0
    s = study(phase=(rule,), n_sequences=960, stop_after_phase=StopAfterPhase(margin=160))
    assert run_study(s, out=stopped, jobs=1, quiet=True, analyse=True) == 0

    stops = {}
    for seed in (0, 1, 2):
        a, b = metrics(full, seed), metrics(stopped, seed)
        loss = a[a.metric == "train/loss"]
        crossed_at, stop_at = stop_point(loss.sequences_seen.tolist(), loss.value.astype(float).tolist(),
                                         s.phase_rules[0], s.stop_after_phase)
        assert stop_at is not None and stop_at < 960, "the test needs every run to stop early"
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
    s = study(stop_after_phase=StopAfterPhase(margin=96))
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


@pytest.mark.slow
def test_a_run_whose_pack_shrinks_as_others_stop_has_the_numbers_it_has_alone(tmp_path):
    """Stopping runs leave their pack (the trainer is rebuilt from the others' split state): the run that stops last
    gives, bit for bit, the metrics it gives trained alone with the same stopping, whatever stopped beside it."""
    s = study(n_sequences=960, stop_after_phase=StopAfterPhase(margin=160))
    assert run_study(s, out=tmp_path / "pack", jobs=1, quiet=True, analyse=False) == 0
    stops = {seed: json.loads((tmp_path / f"pack/tiny/runs/control/seed{seed}/run.json").read_text())["sequences_seen"]
             for seed in (0, 1, 2)}
    last = max(stops, key=stops.get)
    assert len(set(stops.values())) > 1, "the test needs runs of the pack to stop at different points"
    assert run_study(replace(s, seeds=[last]), out=tmp_path / "alone", jobs=1, quiet=True, analyse=False) == 0
    pd.testing.assert_frame_equal(metrics(tmp_path / "pack", last), metrics(tmp_path / "alone", last))
