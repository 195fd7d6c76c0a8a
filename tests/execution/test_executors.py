"""Executors without an engine: choosing one, its options, the file hand-off, and a lean ``import clamp``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clamp.cli import main
from clamp.errors import ConfigError
from clamp.execution.executors import make_executor
from clamp.execution.executors.transfer import collect, files_to_send, unpack, write_back
from clamp.execution.pack import execute_pack
from clamp.execution.plan import plan
from clamp.execution.runner import run_study
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study
from clamp.study.overrides import select
from clamp.tasks import FewShotConfig
from helpers import ROOT

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def study() -> Study:
    return Study(name="tiny", arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16)],
                 seeds=[0, 1], n_sequences=128, eval_every=32, eval_size=16, checkpoint_every=64)


def test_import_clamp_never_imports_ray_or_submitit():
    code = ("import sys, clamp, clamp.execution.runner, clamp.execution.executors, clamp.cli; "
            "print(sorted(m for m in ('ray', 'submitit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_make_executor_names_and_errors(tmp_path):
    assert make_executor("local", jobs=1, threads=1, study_dir=tmp_path) is None
    with pytest.raises(ConfigError, match="unknown"):
        make_executor("dask", jobs=1, threads=1, study_dir=tmp_path)
    with pytest.raises(ConfigError, match="no options"):
        make_executor("local", jobs=1, threads=1, study_dir=tmp_path, options={"address": "x"})
    with pytest.raises(ConfigError, match="cluster"):
        make_executor("slurm", jobs=1, threads=1, study_dir=tmp_path, options={"cluster": "pbs"})


@pytest.mark.parametrize("args, words", [
    (["--address", "head:6379"], "--address"),
    (["--executor", "ray", "--slurm-partition", "gpu"], "--slurm-partition"),
    (["--executor", "slurm", "--slurm-opt", "account"], "KEY=VALUE"),
    (["--gpus", "1"], "--gpus"),
])
def test_misplaced_executor_flags_fail_before_training(tmp_path, capsys, args, words):
    f = tmp_path / "s.py"
    f.write_text("from clamp import Arm, FewShotConfig, ModelConfig, Study\n"
                 "STUDY = Study(name='s', arms=[Arm(name='control', model=ModelConfig(n_layers=1, n_heads=1, d_model=8),\n"
                 "              task=FewShotConfig(n_classes=10, d_in=8))], n_sequences=64, eval_every=32, eval_size=16)\n")
    assert main(["run", str(f), "--out", str(tmp_path / "res"), *args]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "res/s/runs").exists()


def test_slurm_options_reach_submitit_parameters(tmp_path):
    pytest.importorskip("submitit")
    ex = make_executor("slurm", jobs=3, threads=2, study_dir=tmp_path,
                       options={"partition": "gpu", "time_min": 90, "mem_gb": 4, "cluster": "local",
                                "extra": {"slurm_account": "lab"}})
    sub = ex._executor(gpus=0)
    assert sub._executor.parameters["timeout_min"] == 90 and sub._executor.parameters["tasks_per_node"] == 1
    assert ex.folder == tmp_path / ".submitit"
    bad = make_executor("slurm", jobs=1, threads=1, study_dir=tmp_path, options={"cluster": "local", "extra": {"slurm_acount": "x"}})
    with pytest.raises(ConfigError, match="slurm_acount"):
        bad._executor(gpus=0)


def test_files_travel_to_a_worker_and_back(tmp_path):
    """Resume on a 'remote' worker: it gets the resume checkpoint and tables, the driver gets every file back."""
    s = study()
    ref = tmp_path / "ref"
    assert run_study(s, out=ref, jobs=1, quiet=True, analyse=False) == 0
    # a results folder interrupted after the checkpoint at 64 (tables trimmed to it, later checkpoints gone)
    out = tmp_path / "res"
    assert run_study(s, out=out, jobs=1, quiet=True, analyse=False) == 0
    for seed in (0, 1):
        rd = out / f"tiny/runs/control/seed{seed}"
        (rd / "checkpoints" / f"{128:012d}.pt").unlink()
        rec = json.loads((rd / "run.json").read_text())
        rec["status"] = "running"
        (rd / "run.json").write_text(json.dumps(rec))
        (rd / "stale.txt").write_text("driver-only file, never sent")
    job = plan(s, out / "tiny", select(s)).jobs[0]
    assert job.resume_from == 64
    sent = files_to_send(job)
    assert sorted(sent[0]) == ["attention.csv", f"checkpoints/{64:012d}.pt", "metrics.csv", "run.json"]
    local = unpack(job, sent, tmp_path / "worker")
    assert all(str(tmp_path / "worker") in r.folder for r in local.runs)
    assert [o["status"] for o in execute_pack(local)] == ["finished", "finished"]
    back = collect(local, sent)
    assert f"checkpoints/{64:012d}.pt" not in back[0] and f"checkpoints/{128:012d}.pt" in back[0]
    write_back(job, back)
    for seed in (0, 1):
        a, b = ref / f"tiny/runs/control/seed{seed}", out / f"tiny/runs/control/seed{seed}"
        assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
        assert sorted(p.name for p in (a / "checkpoints").glob("*.pt")) == sorted(p.name for p in (b / "checkpoints").glob("*.pt"))
        assert json.loads((b / "run.json").read_text())["status"] == "finished"
        assert not list(b.rglob("*.tmp"))
