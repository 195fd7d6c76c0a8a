"""`clamp run` / `clamp list` / `clamp report` as a user runs them: subprocesses, SIGKILL, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clamp.cli import main
from clamp.training.trainer import Trainer
from helpers import ROOT

STUDY = """\
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study
from clamp.tasks import FewShotConfig

model = ModelConfig(n_layers=2, n_heads=2, d_model=8)
task = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
STUDY = Study(
    name="cli",
    arms=[Arm(name=n, model=model, task=task, lr=lr, batch_size=16) for n, lr in {arms}],
    seeds=[0, 1],
    n_sequences={n},
    eval_every={every},
    eval_size=16,
    checkpoint_every={ckpt},
)
"""


def study_file(tmp_path: Path, arms=(("control", 1e-3), ("fast", 3e-3)), n=128, every=32, ckpt=64) -> Path:
    p = tmp_path / "studies" / "cli.py"
    p.parent.mkdir(exist_ok=True)
    p.write_text(STUDY.format(arms=list(arms), n=n, every=every, ckpt=ckpt))
    return p




def clamp(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    """``python -m clamp ...`` in ``cwd``, importing this checkout's clamp (not whichever one is installed)."""
    env = kw.pop("env", {**os.environ, "MPLBACKEND": "Agg"})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "clamp", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, **kw)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_cli_end_to_end_list_and_report(tmp_path, monkeypatch, capsys):
    study = study_file(tmp_path)
    r = clamp("run", str(study), "--out", "res", "--jobs", "1", "--no-report", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "cli: all 4 run(s) finished" in r.stderr and "runs done" in r.stderr  # the progress line
    d = tmp_path / "res" / "cli"
    assert len(pd.read_csv(d / "summary.csv")) == 4 and not (d / "report.md").exists()
    # `clamp report` builds statistics, plots and the index from the stored files alone
    monkeypatch.chdir(tmp_path)
    assert main(["report", "res/cli", "--quiet"]) == 0
    report = (d / "report.md").read_text()
    assert "`control`" in report and "`fast`" in report and "4 finished" in report
    for stem in ("curves_train_loss", "curves_train_acc", "heldout_loss", "heads_induction", "attention_control"):
        assert (d / "plots" / f"{stem}.png").is_file() and (d / "plots" / f"{stem}.svg").is_file()
        assert f"plots/{stem}.png" in report
    assert main(["list"]) == 0
    assert "cli: arms [control, fast], seeds [0, 1]" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--set", "arms.control.lr=abc"], ["lr expects float", "'abc'"]),
    (["--set", "arms.contrl.lr=1e-3"], ["no arm 'contrl'"]),
    (["--set", "n_sequences=-5"], ["n_sequences=-5 must be positive"]),
    (["--arms", "nope"], ["no such arm"]),
    (["--seeds", "9"], ["not one of the study's seeds"]),
])
def test_bad_overrides_fail_before_training(tmp_path, capsys, args, words):
    study = study_file(tmp_path)
    assert main(["run", str(study), "--out", str(tmp_path / "res"), *args]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "res").exists()


def test_malformed_study_fails_before_training(tmp_path, capsys):
    study = study_file(tmp_path)
    study.write_text(study.read_text().replace("seeds=[0, 1]", "seeds=[]"))
    assert main(["run", str(study), "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert f"{study}:" in err and "no seeds" in err
    assert not (tmp_path / "res").exists()


def test_dry_run_shows_plan_without_training(tmp_path, capsys):
    study = study_file(tmp_path)
    assert main(["run", str(study), "--out", str(tmp_path / "res"), "--dry-run", "--no-pack"]) == 0
    assert capsys.readouterr().out.count("start") == 4 and not (tmp_path / "res").exists()


@pytest.mark.slow
def test_sigkill_mid_study_then_rerun_completes(tmp_path):
    """The runner is SIGKILLed at a known point (CLAMP_FAULT, no timing race), then a rerun resumes."""
    arms = (("a", 1e-3), ("b", 2e-3), ("c", 3e-3))
    study = study_file(tmp_path, arms=arms, n=1600, every=80, ckpt=160)
    d = tmp_path / "res" / "cli"
    # --jobs 1 trains in the runner's own process, arm by arm: a finishes, b is killed at 800 sequences
    r = clamp("run", str(study), "--out", "res", "--jobs", "1", "--quiet", "--no-report", cwd=tmp_path,
              env={**os.environ, "MPLBACKEND": "Agg", "CLAMP_FAULT": "kill:b:*:800"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    done, interrupted = ["a"], "b"
    assert json.loads((d / "runs/b/seed0/run.json").read_text())["status"] == "running"
    assert json.loads((d / "runs/c/seed0/run.json").read_text())["status"] == "pending"
    finished = {a: digest(d / "runs" / a) for a in done}

    r = clamp("run", str(study), "--out", "res", "--jobs", "1", "--quiet", "--no-report", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for a, before in finished.items():
        assert digest(d / "runs" / a) == before, f"finished arm {a} was touched by the rerun"
    rec = json.loads((d / "runs" / interrupted / "seed0" / "run.json").read_text())
    assert rec["status"] == "finished" and rec["resumed_from"] == 640  # the last checkpoint before the kill
    m = pd.read_csv(d / "runs" / interrupted / "seed0" / "metrics.csv")
    assert not m.duplicated(["sequences_seen", "metric"]).any()
    assert m["sequences_seen"].max() == 1600 and sorted(m["sequences_seen"].unique())[:2] == [0, 80]
    assert not list(d.rglob("*.tmp"))


def test_failed_run_gives_nonzero_exit_and_others_finish(tmp_path, monkeypatch, capsys):
    original = Trainer.train_step

    def boom(self):
        if self.cfg.lr > 2e-3:
            raise RuntimeError("boom in training")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", boom)
    study = study_file(tmp_path)
    assert main(["run", str(study), "--out", str(tmp_path / "res"), "--jobs", "1", "--quiet", "--no-report"]) == 1
    assert "fast/seed0 failed" in capsys.readouterr().err
    summary = pd.read_csv(tmp_path / "res" / "cli" / "summary.csv")
    assert sorted(zip(summary["arm"], summary["status"])) == [("control", "finished")] * 2 + [("fast", "failed")] * 2
