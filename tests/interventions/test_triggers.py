"""Triggered (closed-loop) windows: data, per-run firing, null/no-leak, recording, resume, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from clamp.errors import ConfigError
from clamp.execution.runner import run_study
from clamp.interventions import intervention_from_dict, knockout_heads, make_intervener
from clamp.interventions.spec import Window
from clamp.interventions.triggers import TriggeredApplier, is_open
from clamp.interventions.when import When
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study, StudyError
from clamp.study.checks import validate_study
from clamp.study.keys import run_key
from clamp.tasks import FewShotConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def clock(view):
    """A synthetic per-run metric: sequences seen x (1 + init seed) / 1000 (seed 1 runs twice as fast)."""
    return torch.tensor([view.seen * (1 + s) / 1000 for s in view.model.seeds], dtype=torch.float32)


def _ko(start=None, stop=None) -> object:
    w = Window(start=0 if start is None else start, stop=stop)
    return knockout_heads(layer=1, heads=[0], name="ko", windows=[w])


def _train(interventions, seeds=(0, 1), n=256) -> dict[int, dict[str, list[float]]]:
    factory = make_intervener(interventions, TASK.build()) if interventions else None
    t = Trainer(MODEL, TASK, TrainConfig(n_sequences=n, batch_size=16, lr=1e-2, eval_every=64, eval_size=16),
                seeds=list(seeds), intervener_factory=factory, metrics=[clock])
    out: dict[int, dict[str, list[float]]] = {}
    t.run(on_eval=lambda seen, m: out.__setitem__(seen, {k: v.tolist() for k, v in m.items()}))
    return out


def test_when_and_window_round_trip_and_keys_unchanged():
    w = When("train/loss", "<", 0.5, delay=100, duration=1000)
    assert When.from_dict(json.loads(json.dumps(w.to_dict()))) == w
    iv = _ko(start=w, stop=When("induction/L1H0", ">", 0.5))
    assert intervention_from_dict(json.loads(json.dumps(iv.to_dict()))) == iv
    assert Window().to_dict() == {"start": 0, "stop": None}  # untriggered windows serialise as before
    plain = Arm(name="a", model=MODEL, task=TASK, interventions=[knockout_heads(layer=1, keep=[0])])
    assert run_key(Study(name="s", arms=[plain], n_sequences=64, eval_every=32), plain, 0) == \
        run_key(Study(name="s", arms=[plain], n_sequences=64, eval_every=32), plain, 0)
    with pytest.raises(ConfigError, match="op"):
        When("train/loss", "=", 0.5)
    with pytest.raises(ConfigError, match="duration"):
        Window(stop=When("train/loss", "<", 0.5, duration=10))


def test_is_open_delay_duration_stop():
    w = Window(start=When("m", ">", 0, delay=10), stop=When("m", ">", 1, delay=5))
    assert not is_open(w, None, None, 100)
    assert [is_open(w, 20, None, s) for s in (29, 30, 1000)] == [False, True, True]
    assert [is_open(w, 20, 60, s) for s in (64, 65)] == [True, False]


def test_trigger_fires_per_run_at_first_evaluation_past_threshold():
    # clock > 0.1: seed 1 (2x fast) is past at 64 (0.128), seed 0 at 128 (0.128); evaluations every 64
    m = _train([_ko(start=When("clock", ">", 0.1))])
    assert [m[s]["trigger/ko/start"] for s in (0, 64, 128, 192)] == [[0, 0], [0, 1], [1, 1], [1, 1]]
    # fired/ko counts steps edited since the previous evaluation (+1 for the evaluation): per run
    assert m[64]["fired/ko"] == [0, 0]  # detected at 64: nothing edited before
    assert m[128]["fired/ko"][0] == 0 and m[128]["fired/ko"][1] == 5  # 4 steps + the evaluation, run 1 only
    assert m[192]["fired/ko"] == [5, 5]


def test_null_and_positive_per_run():
    """Until its own trigger fires a run trains bit-identically to no intervention; after it, it differs."""
    ref = _train([])
    m = _train([_ko(start=When("clock", ">", 0.1))])
    for s in (0, 64, 128):  # run 0 is untouched through the evaluation at which it triggers
        assert m[s]["train/loss"][0] == ref[s]["train/loss"][0]
    assert m[64]["train/loss"][1] == ref[64]["train/loss"][1]
    assert m[128]["train/loss"][1] != ref[128]["train/loss"][1]  # run 1 knocked out from 64
    assert m[192]["train/loss"][0] != ref[192]["train/loss"][0]


def test_stop_trigger_releases_and_leaves_no_trace():
    """Knockout from 0 until clock > 0.1: after the release no edit fires (no-leak)."""
    m = _train([_ko(stop=When("clock", ">", 0.1))])
    assert [m[s]["trigger/ko/stop"] for s in (0, 64, 128)] == [[0, 0], [0, 1], [1, 1]]
    assert m[64]["fired/ko"] == [5, 5]
    assert m[128]["fired/ko"] == [5, 0]  # run 1 released at 64
    assert m[192]["fired/ko"] == [0, 0] and m[256]["fired/ko"] == [0, 0]


def test_applier_class_and_mask_only_open_runs():
    factory = make_intervener([_ko(start=When("clock", ">", 0.1))], TASK.build())
    t = Trainer(MODEL, TASK, TrainConfig(n_sequences=64, batch_size=16, eval_every=64, eval_size=16), seeds=[0, 1],
                intervener_factory=factory, metrics=[clock])
    assert isinstance(t.intervener, TriggeredApplier)
    assert t.intervener.active(0) == ()
    t.intervener.restore([{}, {"trigger/ko/start": 0}])
    assert t.intervener.active(0) == (0,) and t.intervener.run_open(0, 0) == [False, True]


def _study(iv, **kw) -> Study:
    arm = Arm(name="closed_loop", model=MODEL, task=TASK, lr=1e-2, batch_size=16, interventions=[iv])
    base = dict(name="trig", arms=[arm], seeds=[0, 1], n_sequences=256, eval_every=32, eval_size=16,
                checkpoint_every=64, metrics=[clock])
    base.update(kw)
    return Study(**base)


def test_unknown_metric_rejected_before_training_listing_metrics():
    s = _study(_ko(start=When("train/los", "<", 0.5)))
    with pytest.raises(StudyError) as e:
        validate_study(s)
    msg = str(e.value)
    assert "'train/los'" in msg and "did you mean 'train/loss'" in msg and "prev_token/L1H1" in msg and "clock" in msg
    validate_study(_study(_ko(start=When("clock", ">", 0.1))))  # a user metric is known
    with pytest.raises(StudyError, match="'fired/ko'"):  # computed after the triggers are checked: never seen
        validate_study(_study(_ko(start=When("fired/ko", ">", 0))))


def test_recorded_in_run_json_and_resume_is_exact(tmp_path, monkeypatch):
    s = _study(_ko(start=When("clock", ">", 0.1, delay=32), stop=When("clock", ">", 0.2)))
    assert run_study(s, out=tmp_path / "ref", jobs=1, quiet=True, analyse=False) == 0
    original = Trainer.train_step

    def crash(self):  # the trigger of seed 1 fires at 64 (seed 0 at 128); interrupt after the checkpoint at 128
        if self.seen >= 144:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash)
    with pytest.raises(KeyboardInterrupt):
        run_study(s, out=tmp_path / "cut", jobs=1, quiet=True, analyse=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert run_study(s, out=tmp_path / "cut", jobs=1, quiet=True, analyse=False) == 0
    for seed, start, stop in ((0, 128, 224), (1, 64, 128)):
        rd = Path("trig/runs/closed_loop") / f"seed{seed}"
        ref = (tmp_path / "ref" / rd / "metrics.csv").read_bytes()
        assert (tmp_path / "cut" / rd / "metrics.csv").read_bytes() == ref
        rec = json.loads((tmp_path / "cut" / rd / "run.json").read_text())
        assert rec["resumed_from"] == 128
        trig = rec["triggers"]
        assert trig["trigger/ko/start"]["detected_at"] == start and trig["trigger/ko/start"]["acts_at"] == start + 32
        assert trig["trigger/ko/stop"]["detected_at"] == stop
        assert json.loads((tmp_path / "ref" / rd / "run.json").read_text())["triggers"] == trig
        m = pd.read_csv(tmp_path / "cut" / rd / "metrics.csv")
        fired = m[m.metric == "fired/ko"].set_index("sequences_seen")["value"]
        # opens after the delay: the evaluation at start + 32 is its first edit, then 2 steps per evaluation
        assert fired[start] == 0 and fired[start + 32] == 1 and fired[start + 64] >= 2
        assert (fired[fired.index > stop] == 0).all()  # released at the stop event: no edit after it


def test_pack_regrouped_after_a_run_stops_keeps_the_others_trigger_state(tmp_path):
    """A run stopping after its phase change rebuilds the pack; the remaining run's trigger state survives."""
    from clamp.phase import PhaseRule
    from clamp.phase import StopAfterPhase

    iv = _ko(start=When("clock", ">", 0.1, delay=32))  # seed 1 detects at 64, seed 0 at 128 (opens at 160)
    phase = [PhaseRule(metric="clock", threshold=0.2, direction="above", persist=0)]  # seed 1 at 128, seed 0 at 224
    ref = _study(iv, phase=phase)
    cut = _study(iv, phase=phase, stop_after_phase=StopAfterPhase(margin=0))  # seed 1 stops at 128: regroup
    assert run_study(ref, out=tmp_path / "ref", jobs=1, quiet=True, analyse=False) == 0
    assert run_study(cut, out=tmp_path / "cut", jobs=1, quiet=True, analyse=False) == 0
    rd = Path("trig/runs/closed_loop/seed0")
    assert json.loads((tmp_path / "cut/trig/runs/closed_loop/seed1/run.json").read_text())["stopped_early"]["at"] == 128
    a = pd.read_csv(tmp_path / "ref" / rd / "metrics.csv")
    b = pd.read_csv(tmp_path / "cut" / rd / "metrics.csv")
    assert b.sequences_seen.max() == 224  # seed 0 stops too, after its own crossing
    pd.testing.assert_frame_equal(a[a.sequences_seen <= 224].reset_index(drop=True), b, atol=1e-6, rtol=1e-5)
    fired = b[b.metric == "fired/ko"].set_index("sequences_seen")["value"]
    assert fired[128] == 0 and fired[160] == 1 and fired[192] == 3
