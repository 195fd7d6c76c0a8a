"""The schedule: packs handed out longest first, a long arm split only when that ends the study sooner, and the
numbers of a run the same whatever pack the schedule put it in."""

from __future__ import annotations

from pathlib import Path

from clamp.execution.pack import PackJob, RunSpec
from clamp.execution.runner import run_study
from clamp.execution.schedule import balance, expected_length, makespan, pack_cost
from clamp.study.load import load_study

STUDY = """\
from clamp import Arm, FewShotConfig, ModelConfig, Study
m = ModelConfig(n_layers=2, n_heads=2, d_model=8)
t = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
STUDY = Study(name="sched", arms=[Arm(name="control", model=m, task=t, lr=1e-3, batch_size=16)], seeds=[0, 1, 2, 3],
              n_sequences=128, eval_every=32, eval_size=16, checkpoint_every=64)
"""


def _job(arm: str, n: int, length: int, **kw) -> PackJob:
    runs = tuple(RunSpec(arm=arm, seed=s, hash="", folder="") for s in range(n))
    return PackJob(job_id=0, arm=arm, model={}, task={}, train={"n_sequences": length}, interventions=[], runs=runs,
                   checkpoints=(), extra_evals=(), **kw)


def test_long_arms_are_split_only_when_that_ends_the_study_sooner():
    jobs = [_job("short", 5, 100), _job("long", 5, 1000)]
    two = balance(jobs, 2)
    assert [(j.arm, [r.seed for r in j.runs]) for j in two] == [("long", [0, 1, 2]), ("long", [3, 4]), ("short", list(range(5)))]
    assert [j.job_id for j in two] == [0, 1, 2]
    cost = lambda js: makespan([pack_cost([expected_length(j, r, {}) for r in j.runs]) for j in js], 2)  # noqa: E731
    assert cost(two) < cost(jobs)
    assert [len(j.runs) for j in balance(jobs, 1)] == [5, 5]  # one worker: one pack per arm, longest first
    # the flagship's shape: two long arms and four short ones on two workers are already balanced: no split
    flag = [_job("control", 5, 1_400_000), _job("prev_token", 5, 1_080_000)] + [_job(f"c{i}", 5, 150_000) for i in range(4)]
    assert [len(j.runs) for j in balance(flag, 2)] == [5] * 6


def test_expected_lengths_come_from_the_arms_history_when_runs_stop_after_their_phase_change():
    job = _job("a", 2, 10_000, stop_after={"margin": 100, "relative": 0.0})
    assert expected_length(job, job.runs[0], {"a": [2_000, 4_000, 3_000]}) == 3_000
    assert expected_length(_job("a", 2, 10_000), None, {"a": [2_000]}) == 10_000  # no stopping: the budget


def test_a_run_gives_the_same_numbers_in_the_split_packs_as_in_one(tmp_path: Path):
    path = tmp_path / "sched.py"
    path.write_text(STUDY)
    study = load_study(path)
    assert run_study(study, out=tmp_path / "one", jobs=1, quiet=True, analyse=False) == 0
    assert run_study(study, out=tmp_path / "two", jobs=2, quiet=True, analyse=False) == 0
    for seed in range(4):
        a = (tmp_path / f"one/sched/runs/control/seed{seed}/metrics.csv").read_bytes()
        b = (tmp_path / f"two/sched/runs/control/seed{seed}/metrics.csv").read_bytes()
        assert a == b, seed
