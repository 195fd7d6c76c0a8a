"""Acceptance test of issue 13: a study file in a temporary folder with a custom nnsight intervention and a
custom intervention kind (and, where the task protocol and ``Study(metrics=...)`` exist, a custom task and a custom metric), run
with ``--jobs 2`` (worker processes), killed mid-run, resumed, and read back from ``metrics.csv`` and
``phase_times.csv``; the resumed results equal an uninterrupted run's (up to float rounding).

The study file's functions and classes are found again in the spawned workers and on resume by import
path under the study module's stable name (``clamp_study_<stem>_<hash>``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clamp
import clamp.tasks
from helpers import ROOT

#: the task protocol (clamp.tasks.UserTaskConfig) and Study(metrics=[...]) come from the `tasks` branch
USER_TASKS = hasattr(clamp.tasks, "UserTaskConfig") and "metrics" in {f.name for f in dataclasses.fields(clamp.Study)}

INTERVENTION = '''
import torch
import clamp


def sharpen(model, ctx, power=4.0):
    """Sharpen head 0 of layer 1 (nnsight syntax: read the output, clone, edit, assign)."""
    pattern = model.blocks[1].attn.hook_pattern.output  # [R, B, H, T, T]
    new = pattern.clone()
    p = pattern[:, :, 0] ** power
    new[:, :, 0] = p / p.sum(-1, keepdim=True)
    model.blocks[1].attn.hook_pattern.output = new


SHARPEN = clamp.NnsightIntervention(name="sharpen", fn=sharpen, site="blocks.1.attn.hook_pattern",
                                    windows=[clamp.Window(start=0, stop={stop})])


from dataclasses import dataclass
from clamp.interventions.effects import Compiled, Op


@dataclass(frozen=True, kw_only=True)
class FlipSign(clamp.Intervention):
    """A user kind: negate one layer's attention output."""
    layer: int

    def check(self, probe):
        return [] if 0 <= self.layer < probe.cfg.n_layers else [f"layer={{self.layer}} is out of range"]

    def compile(self, model, task):
        return Compiled([Op(f"blocks.{{self.layer}}.hook_attn_out", lambda x, ctx: -x)])


FLIP = FlipSign(layer=0, windows=[(0, {stop})])
'''

BUILTIN_TASK = '''
MODEL = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = clamp.FewShotConfig(n_classes=10, d_in=8)
EXTRA = {{}}
METRIC = "fired/sharpen"
'''

USER_TASK = '''
from dataclasses import dataclass
from clamp.tasks import IGNORE, Batch, TaskBase, UserTaskConfig


@dataclass(frozen=True, kw_only=True)
class NextParity(UserTaskConfig):
    """Random bits; the target at t is bit_t XOR bit_(t-1)."""

    length: int = 6

    def build(self):
        return NextParityTask(self)


class NextParityTask(TaskBase):
    evaluators = ("train",)

    def __init__(self, cfg):
        self.cfg = cfg

    def dims(self):
        return {{"d_in": 0, "d_vocab": 2, "d_out": 2, "n_ctx": self.cfg.length}}

    def sample(self, n, gen, evaluator="train"):
        bits = torch.randint(2, (n, self.cfg.length), generator=gen)
        targets = torch.full_like(bits, IGNORE)
        targets[:, 1:] = bits[:, 1:] ^ bits[:, :-1]
        return Batch(bits[None], targets[None])

    def default_phase_rule(self):
        return clamp.PhaseRule(metric="train/acc", threshold=0.9, direction="above")


def l1h0_peak(view):
    """Mean of the largest attention weight of layer 1, head 0, per run."""
    return view.patterns[1][:, :, 0].amax(-1).mean((1, 2))


MODEL = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=16)
TASK = NextParity()
EXTRA = {{"metrics": [l1h0_peak], "phase": [clamp.PhaseRule(metric="l1h0_peak", threshold=0.6, direction="above")]}}
METRIC = "l1h0_peak"
'''

STUDY = '''
STUDY = clamp.Study(
    name="e2e", seeds=[0, 1], n_sequences={n}, eval_every={every}, eval_size=32, checkpoint_every={ckpt},
    arms=[clamp.Arm(name="control", model=MODEL, task=TASK, lr=3e-3, batch_size=16),
          clamp.Arm(name="sharp", model=MODEL, task=TASK, lr=3e-3, batch_size=16, interventions=[SHARPEN, FLIP])],
    **EXTRA,
)
'''

N, EVERY, CKPT, STOP = 4800, 160, 480, 1600


def write_study(folder: Path) -> Path:
    path = folder / "e2e_study.py"
    body = INTERVENTION.format(stop=STOP) + (USER_TASK if USER_TASKS else BUILTIN_TASK) + STUDY.format(n=N, every=EVERY, ckpt=CKPT)
    path.write_text(body.replace("{{", "{").replace("}}", "}"))
    return path


def env() -> dict:
    return {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run(study: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clamp", "run", str(study), "--out", str(out), "--jobs", "2", "--quiet"],
                          cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow
def test_custom_intervention_study_with_two_workers_killed_and_resumed(tmp_path):
    study = write_study(tmp_path)
    res = tmp_path / "res"
    runs = [res / "e2e" / "runs" / arm / f"seed{s}" for arm in ("control", "sharp") for s in (0, 1)]
    proc = subprocess.Popen([sys.executable, "-m", "clamp", "run", str(study), "--out", str(res), "--jobs", "2", "--quiet"],
                            cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline, killed = time.time() + 400, False
    while time.time() < deadline and proc.poll() is None:
        sharp = runs[2]
        if status(sharp) == "running" and any(int(p.stem) > 0 for p in (sharp / "checkpoints").glob("*.pt")):
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its worker processes, mid-run
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed, f"the study ended before the kill: {proc.stderr.read().decode()[-3000:]}"
    assert status(runs[2]) == "running"

    r = run(study, res, tmp_path)  # resume
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert all(status(f) == "finished" for f in runs)
    sharp_rec = json.loads((runs[2] / "run.json").read_text())
    assert sharp_rec["resumed_from"] and sharp_rec["resumed_from"] > 0  # it resumed from a checkpoint, not from 0
    kinds = [iv["kind"] for iv in sharp_rec["config"]["interventions"]]  # a built-in kind, and a user kind by import path
    assert kinds[0] == "nnsight" and sharp_rec["config"]["interventions"][0]["fn"].startswith("clamp_study_e2e_study_")
    assert kinds[1].startswith("clamp_study_e2e_study_") and kinds[1].endswith(":FlipSign")

    # the custom metric (or, without the task protocol, the custom intervention's firing record) in metrics.csv
    metric = "l1h0_peak" if USER_TASKS else "fired/sharpen"
    for folder in (runs if USER_TASKS else runs[2:]):
        values = [(int(r["sequences_seen"]), float(r["value"])) for r in rows(folder / "metrics.csv") if r["metric"] == metric]
        assert [s for s, _ in values] == sorted({s for s, _ in values}) and values[-1][0] == N  # once per evaluation
    for name in ("sharpen", "flipsign"):  # both custom interventions acted in their window, and only there
        fired = [(int(r["sequences_seen"]), float(r["value"])) for r in rows(runs[2] / "metrics.csv") if r["metric"] == f"fired/{name}"]
        assert all(v > 0 for s, v in fired if s < STOP) and all(v == 0 for s, v in fired if s > STOP + EVERY), name

    # ... and in phase_times.csv, one row per run for the rule on it (or the default rule)
    phase = rows(res / "e2e" / "phase_times.csv")
    rule_metric = "l1h0_peak" if USER_TASKS else "train/loss"
    assert {(p["arm"], p["seed"]) for p in phase if p["metric"] == rule_metric} == {
        (a, str(s)) for a in ("control", "sharp") for s in (0, 1)}

    # the killed-and-resumed study equals an uninterrupted one: the same rows, the same values up to float
    # rounding (a resumed run may train in a pack of another size, and matrix products of another shape round
    # differently in the last bits)
    clean = tmp_path / "clean"
    r = run(study, clean, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for folder in runs:
        got, want = rows(folder / "metrics.csv"), rows(clean / folder.relative_to(res) / "metrics.csv")
        assert [(g["sequences_seen"], g["metric"]) for g in got] == [(w["sequences_seen"], w["metric"]) for w in want]
        for g, w in zip(got, want):
            assert float(g["value"]) == pytest.approx(float(w["value"]), rel=1e-4, abs=1e-6), (folder, g, w)


def test_resume_from_the_checkpoint_at_zero_writes_each_evaluation_once(tmp_path):
    """Found by the test above: a run killed before its first checkpoint after 0 resumed from 0 and wrote
    the evaluation at 0 twice into metrics.csv (and attention.csv)."""
    from clamp.execution.runner import run_study
    from clamp.study import load_study

    path = tmp_path / "tiny.py"
    path.write_text(INTERVENTION.format(stop=64) + BUILTIN_TASK.replace("{{}}", "{}") + STUDY.format(n=96, every=32, ckpt=48))
    study = load_study(path)
    assert run_study(study, out=tmp_path / "res", seeds=[0], arms=["sharp"], jobs=1, quiet=True, analyse=False) == 0
    run = tmp_path / "res" / "e2e" / "runs" / "sharp" / "seed0"
    clean = (run / "metrics.csv").read_text()
    rec = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**rec, "status": "running"}))  # as if killed before the checkpoint at 48
    for p in (run / "checkpoints").glob("*.pt"):
        if int(p.stem) > 0:
            p.unlink()
    assert run_study(study, out=tmp_path / "res", seeds=[0], arms=["sharp"], jobs=1, quiet=True, analyse=False) == 0
    assert json.loads((run / "run.json").read_text())["resumed_from"] == 0
    assert (run / "metrics.csv").read_text() == clean
