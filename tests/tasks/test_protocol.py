"""The task protocol: user tasks and metrics run like built-ins (issue 13 item 3)."""

from __future__ import annotations

import dataclasses
import sys

import pandas as pd
import pytest
import torch

from clamp.errors import ConfigError
from clamp.execution.runner import run_study
from clamp.importpath import import_path, resolve
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study
from clamp.phase import PhaseRule
from clamp.study.load import load_study
from clamp.study.records import study_record
from clamp.tasks import FewShotConfig, RepeatConfig, Task, TaskConfig, task_from_dict
from clamp.tasks.measures import induction_strength, loss_and_accuracy, prev_token_score
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer
from helpers import ROOT

HELPER = '''
from dataclasses import dataclass
import torch
from clamp.tasks import IGNORE, Batch, TaskBase, UserTaskConfig
from clamp.phase import PhaseRule

@dataclass(frozen=True, kw_only=True)
class CopyPrev(UserTaskConfig):
    vocab: int = 4
    length: int = 6
    def build(self):
        return CopyPrevTask(self)

class CopyPrevTask(TaskBase):
    evaluators = ("train",)
    def __init__(self, cfg):
        self.cfg = cfg
    def dims(self):
        return {"d_in": 0, "d_vocab": self.cfg.vocab, "d_out": self.cfg.vocab, "n_ctx": self.cfg.length}
    def sample(self, n, gen, evaluator="train"):
        x = torch.randint(self.cfg.vocab, (n, self.cfg.length), generator=gen)
        y = torch.full_like(x, IGNORE)
        y[:, 1:] = x[:, :-1]
        return Batch(x[None], y[None])
    def default_phase_rule(self):
        return PhaseRule(metric="train/acc", threshold=0.9, direction="above")

def top_logit(view):
    return view.logits.max(-1).values.mean((1, 2))

def two(view):
    return {"two/a": view.logits.new_zeros(view.logits.shape[0]), "two/b": view.logits.new_ones(view.logits.shape[0])}
'''


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """A user package on sys.path holding a task and two metrics."""
    (tmp_path / "user_tasks_helper.py").write_text(HELPER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # for spawned worker processes
    sys.modules.pop("user_tasks_helper", None)
    import user_tasks_helper
    yield user_tasks_helper
    sys.modules.pop("user_tasks_helper", None)


def test_user_task_round_trips_by_import_path(helper):
    cfg = helper.CopyPrev(vocab=5)
    d = cfg.to_dict()
    assert d == {"kind": "user_tasks_helper:CopyPrev", "vocab": 5, "length": 6}
    assert task_from_dict(d) == cfg
    assert isinstance(cfg, TaskConfig) and isinstance(cfg.build(), Task)
    with pytest.raises(ConfigError, match="unknown keys"):
        task_from_dict({**d, "bogus": 1})
    with pytest.raises(ConfigError, match="cannot import module"):
        task_from_dict({"kind": "no_such_module_xyz:Thing"})


def test_import_path_rejects_what_cannot_be_found_again():
    assert resolve(import_path(FewShotConfig)) is FewShotConfig
    with pytest.raises(ConfigError, match="no import path"):
        import_path(lambda v: v)

    def local(view):
        return view

    with pytest.raises(ConfigError, match="no import path"):
        import_path(local)


def test_user_metrics_are_recorded_and_checked(helper):
    cfg = TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)
    t = Trainer(ModelConfig(n_layers=1, n_heads=2, d_model=8), helper.CopyPrev(), cfg, seeds=[0, 1],
                metrics=[helper.top_logit, helper.two])
    m = t.evaluate()
    assert m["two/a"].tolist() == [0.0, 0.0] and m["two/b"].tolist() == [1.0, 1.0]
    assert m["top_logit"].shape == (2,) and "train/loss" in m and "prev_token/L0H1" in m

    def bad_shape(view):
        return torch.zeros(3)

    def train(view):  # its dict's key "loss" is recorded as train/loss, which the task records
        return {"loss": torch.zeros(2)}

    def interventions(view):  # recorded as interventions/fired: a name clamp writes itself
        return {"fired": torch.zeros(2)}

    def clash(view):  # a dict's keys are recorded under the function's name: clash/train/loss, no clash
        return {"train/loss": torch.zeros(2)}

    t.metrics = (clash,)
    assert "clash/train/loss" in t.evaluate()
    for fn, msg in ((bad_shape, "one value per run"), (train, "already recorded"), (interventions, "reserved")):
        t.metrics = (fn,)
        with pytest.raises(ConfigError, match=msg):
            t.evaluate()


def test_builtin_metrics_unchanged(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg):
    """The few-shot task's metrics equal what the trainer computed itself before the protocol (bit for bit)."""
    t = Trainer(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, seeds=[0, 1])
    t.run(64)
    got = t.evaluate()
    assert got.pop("train_batch/loss").shape == (2,)
    want = {}
    for name, batch in t.eval_sets.items():
        names = t.pattern_names if name == "train" else ()
        logits, cache = t.model.run_with_cache(batch, names)
        want[f"{name}/loss"], want[f"{name}/acc"] = loss_and_accuracy(logits, batch.targets)
        if name == "train":
            for l, n in enumerate(names):
                s = prev_token_score(cache[n])
                for h in range(s.shape[1]):
                    want[f"prev_token/L{l}H{h}"] = s[:, h]
            s = induction_strength(cache[names[1]], 4, batch.meta["correct_pos"], batch.meta["label_pos"])
            for h in range(s.shape[1]):
                want[f"induction/L1H{h}"] = s[:, h]
    assert sorted(got) == sorted(want)
    for k in want:
        assert torch.equal(got[k], want[k].float()), k


def test_default_phase_rule_comes_from_the_task(helper):
    fs = Study(name="a", arms=[Arm(name="x", model=ModelConfig(n_layers=1, n_heads=2, d_model=8), task=FewShotConfig(n_classes=10, d_in=8))], seeds=[0], n_sequences=64, eval_every=32)
    assert fs.phase == (PhaseRule(),)
    rep = Study(name="b", arms=[Arm(name="x", model=ModelConfig(n_layers=1, n_heads=2, d_model=8), task=RepeatConfig(vocab=16, half=4))], seeds=[0], n_sequences=64, eval_every=32)
    assert rep.phase[0].metric == "loss/second_repeat" and rep.phase[0].direction == "below"
    user = Study(name="c", arms=[Arm(name="x", model=ModelConfig(n_layers=1, n_heads=2, d_model=8), task=helper.CopyPrev())], seeds=[0], n_sequences=64, eval_every=32)
    assert user.phase == (PhaseRule(metric="train/acc", threshold=0.9, direction="above"),)
    given = Study(name="d", arms=[Arm(name="x", model=ModelConfig(n_layers=1, n_heads=2, d_model=8), task=helper.CopyPrev())], seeds=[0], n_sequences=64, eval_every=32, phase=PhaseRule())
    assert given.phase == (PhaseRule(),)


def test_metrics_in_run_key_only_when_given(helper):
    arm = Arm(name="x", model=ModelConfig(n_layers=1, n_heads=2, d_model=8), task=helper.CopyPrev())
    plain = study_record(Study(name="s", arms=[arm], seeds=[0], n_sequences=64, eval_every=32))
    with_m = study_record(Study(name="s", arms=[arm], seeds=[0], n_sequences=64, eval_every=32, metrics=[helper.top_logit]))
    assert "metrics" not in plain["arms"][0]
    assert with_m["arms"][0]["metrics"] == ["user_tasks_helper:top_logit"]
    assert plain["arms"][0]["run_hashes"] != with_m["arms"][0]["run_hashes"]


@pytest.mark.slow
def test_example_study_runs_and_records_its_metric(tmp_path):
    study = load_study(ROOT / "studies" / "custom_task_metric.py")
    study = dataclasses.replace(study, n_sequences=1_000, seeds=(0,), eval_every=250)
    assert run_study(study, out=tmp_path, jobs=1, quiet=True) == 0
    m = pd.read_csv(tmp_path / "custom_task_metric" / "runs" / "control" / "seed0" / "metrics.csv")
    assert "prev_token_max" in set(m.metric) and "train/acc" in set(m.metric)
    pt = pd.read_csv(tmp_path / "custom_task_metric" / "phase_times.csv")
    assert {"prev_token_max", "train/acc"} <= set(pt.metric)


@pytest.mark.slow
def test_user_task_and_metric_in_worker_processes_and_resume(helper, tmp_path):
    arm = Arm(name="user", model=ModelConfig(n_layers=1, n_heads=2, d_model=8), task=helper.CopyPrev(), lr=3e-3)
    arm2 = dataclasses.replace(arm, name="user2", lr=1e-3)
    study = Study(name="u", arms=[arm, arm2], seeds=[0], n_sequences=256, eval_every=64, eval_size=16,
                  metrics=[helper.top_logit])
    assert run_study(study, out=tmp_path, jobs=2, quiet=True, analyse=False) == 0
    first = (tmp_path / "u" / "runs" / "user" / "seed0" / "metrics.csv").read_text()
    assert "top_logit" in first
    longer = dataclasses.replace(study, n_sequences=256)
    assert run_study(longer, out=tmp_path, jobs=1, quiet=True, analyse=False) == 0  # finished: skipped, same file
    assert (tmp_path / "u" / "runs" / "user" / "seed0" / "metrics.csv").read_text() == first


@pytest.mark.slow
def test_study_file_task_and_metric_in_worker_processes(tmp_path):
    """A task and a metric defined in the study file itself, trained in spawned workers (--jobs 2)."""
    src = (ROOT / "studies" / "custom_task_metric.py").read_text()
    src = src.replace("n_sequences=8_000", "n_sequences=256").replace("eval_every=250", "eval_every=128")
    src = src.replace('arms=[Arm(name="control"', 'arms=[Arm(name="other", model=ModelConfig(n_layers=1, n_heads=2, d_model=8), '
                      'task=NextParity(length=6), lr=1e-3), Arm(name="control"')
    f = tmp_path / "studies" / "custom.py"
    f.parent.mkdir()
    f.write_text(src)
    study = load_study(f)
    assert run_study(study, out=tmp_path / "res", jobs=2, quiet=True, analyse=False, study_file=f) == 0
    for arm in ("control", "other"):
        m = pd.read_csv(tmp_path / "res" / "custom_task_metric" / "runs" / arm / "seed0" / "metrics.csv")
        assert "prev_token_max" in set(m.metric)
