"""The runner in-process: files written, skip/resume by hash, failure and divergence isolation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import clamp.training.trainer
from clamp.model.config import ModelConfig
from clamp.execution.checkpoint import merge_states, split_state
from clamp.store import truncate_rows
from clamp.execution.executors.local import InlineExecutor
from clamp.execution.runner import run_study
from clamp.study.overrides import apply_overrides
from clamp.study.design import Arm, Study, StudyError
from clamp.tasks import FewShotConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def tiny_study(**kw) -> Study:
    base = dict(name="tiny", arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16),
                                   Arm(name="other", model=MODEL, task=TASK, lr=3e-3, batch_size=16)],
                seeds=[0, 1], n_sequences=128, eval_every=32, eval_size=16, checkpoint_every=64)
    base.update(kw)
    return Study(**base)


def run(study: Study, out: Path, **kw) -> int:
    return run_study(study, out=out, jobs=1, quiet=True, analyse=kw.pop("analyse", False), **kw)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_end_to_end_files(tmp_path):
    assert run(tiny_study(), tmp_path) == 0
    d = tmp_path / "tiny"
    study = json.loads((d / "study.json").read_text())
    assert study["seeds"] == [0, 1] and study["control"] == "control" and study["code_revision"]
    assert {"torch", "nnsight", "clamp", "python"} <= set(study["versions"]) and study["machine"]["cores"]
    for arm in ("control", "other"):
        for seed in (0, 1):
            rd = d / "runs" / arm / f"seed{seed}"
            rec = json.loads((rd / "run.json").read_text())
            assert rec["status"] == "finished" and rec["seeds"]["init"] == seed and rec["hash"]
            assert rec["timings"]["wall_seconds"] > 0 and rec["timings"]["packed_with"] == 2
            m = pd.read_csv(rd / "metrics.csv")
            assert list(m.columns) == ["sequences_seen", "run", "metric", "value"]
            assert set(m["run"]) == {seed}  # one file per run even though seeds were packed
            assert sorted(m["sequences_seen"].unique()) == [0, 32, 64, 96, 128]
            assert not m.duplicated(["sequences_seen", "metric"]).any()
            assert sorted(int(p.stem) for p in (rd / "checkpoints").glob("*.pt")) == [0, 64, 128]
            att = pd.read_csv(rd / "attention.csv")
            assert set(att["sequences_seen"]) == {0, 64, 128}
    assert not list(d.rglob("*.tmp"))


def test_packed_equals_unpacked(tmp_path):
    run(tiny_study(arms=[tiny_study().arms[0]]), tmp_path / "a")
    run(tiny_study(arms=[tiny_study().arms[0]]), tmp_path / "b", pack=False)
    for seed in (0, 1):
        a = pd.read_csv(tmp_path / "a/tiny/runs/control" / f"seed{seed}" / "metrics.csv")
        b = pd.read_csv(tmp_path / "b/tiny/runs/control" / f"seed{seed}" / "metrics.csv")
        pd.testing.assert_frame_equal(a, b, atol=1e-5, rtol=1e-4)


def test_rerun_skips_finished_runs_byte_for_byte_and_reruns_edited_arm(tmp_path):
    s = tiny_study()
    run(s, tmp_path)
    before = digest(tmp_path / "tiny" / "runs")
    assert run(s, tmp_path) == 0
    assert digest(tmp_path / "tiny" / "runs") == before
    edited = apply_overrides(s, ["arms.other.lr=1e-3"])
    with pytest.raises(StudyError, match="--replace"):  # finished work is never replaced without asking
        run(edited, tmp_path)
    assert digest(tmp_path / "tiny" / "runs") == before
    run(edited, tmp_path, replace=True)
    after = digest(tmp_path / "tiny" / "runs")
    assert {k: v for k, v in after.items() if k.startswith("control")} == {k: v for k, v in before.items() if k.startswith("control")}
    assert after["other/seed0/run.json"] != before["other/seed0/run.json"]
    # the old runs were moved aside, byte for byte, not deleted
    old_key = json.loads((tmp_path / "tiny/runs/.stale/other").glob("seed0-*").__next__().joinpath("run.json").read_text())["hash"]
    moved = {k.replace(f"/seed0-{old_key}/", "/seed0/"): v for k, v in after.items() if k.startswith(".stale/other/seed0-")}
    assert moved == {".stale/" + k: v for k, v in before.items() if k.startswith("other/seed0/")}


def test_interrupted_run_resumes_from_checkpoint_identically(tmp_path, monkeypatch):
    s = tiny_study(arms=[tiny_study().arms[0]])
    run(s, tmp_path / "ref")
    original = Trainer.train_step

    def crash_after_80(self):
        if self.seen >= 80:
            raise KeyboardInterrupt  # like Ctrl-C or a kill: not caught as a run failure
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash_after_80)
    with pytest.raises(KeyboardInterrupt):
        run(s, tmp_path / "cut")
    rd = tmp_path / "cut/tiny/runs/control/seed0"
    assert json.loads((rd / "run.json").read_text())["status"] == "running"
    monkeypatch.setattr(Trainer, "train_step", original)
    assert run(s, tmp_path / "cut") == 0
    rec = json.loads((rd / "run.json").read_text())
    assert rec["resumed_from"] == 64 and rec["timings"]["attempts"] == 2
    for seed in (0, 1):
        ref = (tmp_path / "ref/tiny/runs/control" / f"seed{seed}" / "metrics.csv").read_bytes()
        assert (tmp_path / "cut/tiny/runs/control" / f"seed{seed}" / "metrics.csv").read_bytes() == ref


def test_run_that_raises_is_isolated(tmp_path, monkeypatch):
    original = Trainer.train_step

    def boom(self):
        if self.cfg.lr > 2e-3 and self.seen >= 32:
            raise RuntimeError("boom")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", boom)
    assert run(tiny_study(), tmp_path) == 1
    d = tmp_path / "tiny"
    rec = json.loads((d / "runs/other/seed0/run.json").read_text())
    assert rec["status"] == "failed" and "RuntimeError: boom" in rec["traceback"]
    assert json.loads((d / "runs/control/seed1/run.json").read_text())["status"] == "finished"
    summary = pd.read_csv(d / "summary.csv")
    assert dict(zip(summary["arm"] + summary["seed"].astype(str), summary["status"])) == {
        "control0": "finished", "control1": "finished", "other0": "failed", "other1": "failed"}
    # A rerun retries the failed runs from their last checkpoint and leaves the finished ones alone.
    monkeypatch.setattr(Trainer, "train_step", original)
    assert run(tiny_study(), tmp_path) == 0
    assert json.loads((d / "runs/other/seed0/run.json").read_text())["resumed_from"] == 0


def test_diverged_run_is_marked_and_packmates_continue(tmp_path, monkeypatch):
    original = clamp.training.trainer.per_run_loss

    def nan_for_run1(logits, batch):
        losses = original(logits, batch)
        return losses * torch.tensor([1.0, float("nan")]) if losses.shape[0] == 2 else losses

    s = tiny_study(arms=[tiny_study().arms[0]])
    monkeypatch.setattr(clamp.training.trainer, "per_run_loss", nan_for_run1)
    assert run(s, tmp_path) == 1
    rd = tmp_path / "tiny/runs/control"
    bad = json.loads((rd / "seed1/run.json").read_text())
    assert bad["status"] == "diverged" and bad["diverged_at"] == 16 and "nan" in bad["error"]
    assert json.loads((rd / "seed0/run.json").read_text())["status"] == "finished"
    assert pd.read_csv(rd / "seed1/metrics.csv")["sequences_seen"].max() == 0
    monkeypatch.setattr(clamp.training.trainer, "per_run_loss", original)
    single = tmp_path / "single"
    run(tiny_study(arms=[tiny_study().arms[0]], seeds=[0]), single)
    pd.testing.assert_frame_equal(pd.read_csv(rd / "seed0/metrics.csv"),
                                  pd.read_csv(single / "tiny/runs/control/seed0/metrics.csv"), atol=1e-5, rtol=1e-4)
    assert run(s, tmp_path) == 1  # diverged runs are not retried, but still reported


def test_split_merge_roundtrip(tiny_model_cfg, tiny_task_cfg):
    t = Trainer(tiny_model_cfg, tiny_task_cfg, TrainConfig(n_sequences=64, batch_size=16, eval_every=32, eval_size=8), seeds=[0, 1, 2])
    t.run(32, on_eval=lambda *_: None)
    state = t.state_dict()
    merged = merge_states(split_state(state, 3))
    for k, v in state["model"].items():
        assert torch.equal(merged["model"][k], v)
    for i, st in state["opt"]["state"].items():
        for k, v in st.items():
            assert torch.equal(merged["opt"]["state"][i][k], v)
    t2 = Trainer(tiny_model_cfg, tiny_task_cfg, TrainConfig(n_sequences=64, batch_size=16, eval_every=32, eval_size=8), seeds=[0, 1, 2])
    t2.load_state_dict(merged)
    t.run(64)
    t2.run(64)
    for (k, a), b in zip(t.model.state_dict().items(), t2.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_truncate_rows_drops_later_and_partial_rows(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("sequences_seen,run,metric,value\n0,0,a,1.0\n32,0,a,0.5\n64,0,a,0.2\n96,0,a,0.")
    truncate_rows(p, "sequences_seen,run,metric,value\n", 32)
    assert p.read_text() == "sequences_seen,run,metric,value\n0,0,a,1.0\n32,0,a,0.5\n"


def test_custom_executor_is_used(tmp_path):
    seen = []

    class Recording(InlineExecutor):
        def run(self, jobs, on_event):
            seen.extend(j.arm for j in jobs)
            yield from super().run(jobs, on_event)

    assert run_study(tiny_study(n_sequences=32), out=tmp_path, quiet=True, analyse=False, executor=Recording()) == 0
    assert seen == ["control", "other"]


def test_progress_time_left_counts_packs_not_yet_started():
    from clamp.execution.progress import Progress

    p = Progress(name="s", total_runs=4, done_runs=0, n_sequences=100, quiet=True, planned=400)
    p.start_pack(0, label="a", n_runs=2, start=0)  # the second pack (2 runs) has not started
    p.t0 -= 10.0  # 10 s elapsed
    p.update(0, 50)  # 100 of 400 run-sequences done in 10 s: 30 s left for the other 300
    assert "~0m30s left" in p.line()
