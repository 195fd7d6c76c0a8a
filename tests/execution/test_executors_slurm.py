"""Slurm executor through submitit's local mode: a job array gives the local numbers; a preempted task resumes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

pytest.importorskip("submitit")

from clamp.execution.executors.slurm_executor import SlurmExecutor, refresh
from clamp.execution.plan import plan
from clamp.execution.runner import run_study
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study
from clamp.study.overrides import select
from clamp.tasks import FewShotConfig

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def study(n: int = 128) -> Study:
    return Study(name="tiny", arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16),
                                    Arm(name="other", model=MODEL, task=TASK, lr=3e-3, batch_size=16)],
                 seeds=[0, 1], n_sequences=n, eval_every=32, eval_size=16, checkpoint_every=max(64, n // 8))


def tables(folder: Path) -> dict[str, bytes]:
    out = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("runs/*/*/*.csv"))}
    out.update({str(p.relative_to(folder)): b"" for p in sorted(folder.glob("runs/*/*/checkpoints/*.pt"))})
    return out


def test_refresh_resumes_from_the_latest_common_checkpoint_and_skips_done_runs(tmp_path):
    s = study(4096)
    job = plan(s, tmp_path, select(s, ["control"])).jobs[0]
    assert refresh(job) == (job, [])
    a, b = (Path(r.folder) for r in job.runs)
    for folder, points in ((a, (0, 512, 1024)), (b, (0, 512))):
        (folder / "checkpoints").mkdir(parents=True)
        for p in points:
            (folder / "checkpoints" / f"{p:012d}.pt").write_bytes(b"x")
    todo, done = refresh(job)
    assert todo.resume_from == 512 and done == []
    (b / "run.json").write_text(json.dumps({"status": "finished", "hash": job.runs[1].hash}))
    todo, done = refresh(job)
    assert todo.resume_from == 1024 and [r.seed for r in todo.runs] == [0] and done[0]["status"] == "finished"
    (b / "run.json").write_text(json.dumps({"status": "finished", "hash": "another-key"}))
    assert len(refresh(job)[0].runs) == 2  # a finished run of another configuration is not this job's


@pytest.mark.slow
def test_submitit_local_job_array_gives_the_local_numbers(tmp_path):
    assert run_study(study(), out=tmp_path / "local", jobs=1, quiet=True, analyse=False) == 0
    assert run_study(study(), out=tmp_path / "slurm", jobs=2, quiet=True, analyse=True, executor="slurm",
                     executor_options={"cluster": "local", "time_min": 10}) == 0
    assert tables(tmp_path / "slurm/tiny") == tables(tmp_path / "local/tiny")
    assert (tmp_path / "slurm/tiny/report.md").is_file()
    assert list((tmp_path / "slurm/tiny/.submitit").glob("*_log.out")), "submitit's logs sit beside the results"


class PreemptFirst(SlurmExecutor):
    """Sends the preemption signal to the first task once its runs have passed a checkpoint."""

    preempted: list[int] = []

    def run(self, jobs, on_event):
        def preempt_then_forward(ev):
            if not self.preempted and ev["seen"] >= 700:
                # submitit's local controller runs the task as its child; Slurm would signal the task itself.
                controller = self.submitted[ev["job"]]._process.pid
                children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
                for pid in children:
                    os.kill(int(pid), signal.SIGUSR2)
                self.preempted.extend(int(p) for p in children)
            on_event(ev)

        yield from super().run(jobs, preempt_then_forward)


@pytest.mark.slow
def test_preempted_task_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    s = Study(name="tiny", arms=[study().arms[0]], seeds=[0, 1], n_sequences=4096, eval_every=32, eval_size=16,
              checkpoint_every=512)
    assert run_study(s, out=tmp_path / "local", jobs=1, quiet=True, analyse=False) == 0
    ex = PreemptFirst(folder=tmp_path / "slurm/tiny/.submitit", cluster="local", time_min=10, poll=0.2)
    ex.preempted = []
    assert run_study(s, out=tmp_path / "slurm", quiet=True, analyse=False, executor=ex) == 0
    assert ex.preempted, "the test must preempt a task mid-pack"
    rec = json.loads((tmp_path / "slurm/tiny/runs/control/seed0/run.json").read_text())
    assert rec["timings"]["attempts"] == 2 and rec["resumed_from"] >= 512
    assert tables(tmp_path / "slurm/tiny") == tables(tmp_path / "local/tiny")



class KillFirst(SlurmExecutor):
    """SIGKILLs the first task once it is training (a node crash, an OOM kill); records its arm."""

    killed: list[str] = []

    def run(self, jobs, on_event):
        def kill_then_forward(ev):
            if not self.killed and ev["seen"] >= 64:
                controller = self.submitted[ev["job"]]._process.pid
                children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
                for pid in children:
                    os.kill(int(pid), signal.SIGKILL)
                if children:
                    self.killed.append(next(j.arm for j in jobs if j.job_id == ev["job"]))
            on_event(ev)

        yield from super().run(jobs, kill_then_forward)


@pytest.mark.slow
def test_killed_task_marks_its_runs_failed_and_the_others_finish(tmp_path):
    s = study(2048)
    ex = KillFirst(folder=tmp_path / "tiny/.submitit", jobs=1, cluster="local", time_min=10, poll=0.2)
    ex.killed = []
    assert run_study(s, out=tmp_path, quiet=True, analyse=False, executor=ex) == 1
    assert ex.killed, "the test must kill a task mid-pack"
    killed = ex.killed[0]  # the local array runs its tasks at once: either pack may be the first to report
    spared = ({"control", "other"} - {killed}).pop()
    status = {arm: [json.loads((tmp_path / f"tiny/runs/{arm}/seed{seed}/run.json").read_text()) for seed in (0, 1)]
              for arm in ("control", "other")}
    assert [r["status"] for r in status[killed]] == ["failed", "failed"]
    assert status[killed][0]["error"]  # submitit's reason, e.g. the task's exit status
    assert [r["status"] for r in status[spared]] == ["finished", "finished"]
    # a rerun resumes the lost pack from its last checkpoint
    assert run_study(s, out=tmp_path, jobs=1, quiet=True, analyse=False) == 0
