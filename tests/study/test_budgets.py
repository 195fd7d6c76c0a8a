"""Per-arm budgets: an arm may train longer (or shorter) than the study, without touching other arms' run keys."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from clamp.cli import main
from clamp.errors import ConfigError
from clamp.execution.plan import plan
from clamp.execution.runner import run_study
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study
from clamp.study.load import load_study
from clamp.study.overrides import apply_overrides, select
from clamp.study.keys import run_key
from clamp.study.records import study_record
from clamp.tasks import FewShotConfig
from helpers import ROOT

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def study(long: int | None = 256) -> Study:
    return Study(name="tiny", arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16, n_sequences=long),
                                    Arm(name="fast", model=MODEL, task=TASK, lr=3e-3, batch_size=16)],
                 seeds=[0, 1], n_sequences=128, eval_every=32, eval_size=16, checkpoint_every=64)


def test_arm_budget_sets_length_and_schedule():
    s = study()
    assert s.train_config(s.arm("control")).n_sequences == 256 and s.train_config(s.arm("fast")).n_sequences == 128
    assert s.checkpoint_points(s.arm("control")) == [0, 64, 128, 192, 256]
    assert s.checkpoint_points(s.arm("fast")) == [0, 64, 128]
    rec = study_record(s)
    assert [a["n_sequences"] for a in rec["arms"]] == [256, 128] and rec["n_sequences"] == 128
    with pytest.raises(ConfigError, match="n_sequences"):
        Arm(name="x", model=MODEL, task=TASK, n_sequences=0)


def test_run_keys_unchanged_for_arms_without_a_budget():
    with_budget, without = study(256), study(None)
    for seed in (0, 1):
        assert run_key(with_budget, with_budget.arm("fast"), seed) == run_key(without, without.arm("fast"), seed)
        assert run_key(with_budget, with_budget.arm("control"), seed) != run_key(without, without.arm("control"), seed)
    # an arm that sets the study's own length computes the same thing, so it keeps its key
    same = study(128)
    assert run_key(same, same.arm("control"), 0) == run_key(without, without.arm("control"), 0)
    # the keys of a shipped study, as computed by the code before per-arm budgets existed
    qs = load_study(ROOT / "studies" / "quickstart.py")
    from clamp.study.keys import legacy_key

    assert {a.name: legacy_key(qs, a, 0) for a in qs.arms} == {"control": "9b083f60aede34a1", "match_clamp": "5bf2a56d77a411f9"}


def test_override_and_dry_run_show_the_budget(tmp_path, capsys):
    s = apply_overrides(study(None), ["arms.control.n_sequences=512"])
    assert s.arm("control").n_sequences == 512
    p = plan(s, tmp_path, select(s))
    assert {j.arm: j.train["n_sequences"] for j in p.jobs} == {"control": 512, "fast": 128}
    f = tmp_path / "budget.py"
    f.write_text("from clamp import Arm, FewShotConfig, ModelConfig, Study\n"
                 "m = ModelConfig(n_layers=2, n_heads=2, d_model=8)\n"
                 "t = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)\n"
                 "STUDY = Study(name='budget', arms=[Arm(name='control', model=m, task=t, n_sequences=4000),\n"
                 "    Arm(name='fast', model=m, task=t)], seeds=[0], n_sequences=1000, eval_every=500, eval_size=16)\n")
    assert main(["run", str(f), "--out", str(tmp_path / "res"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "control s0 (1 run(s) packed, 4,000 sequences)" in out and "fast s0 (1 run(s) packed)" in out


@pytest.mark.slow
def test_arms_train_to_their_own_budgets(tmp_path):
    assert run_study(study(), out=tmp_path, jobs=1, quiet=True, analyse=True) == 0
    d = tmp_path / "tiny"
    for arm, n in (("control", 256), ("fast", 128)):
        for seed in (0, 1):
            rec = json.loads((d / f"runs/{arm}/seed{seed}/run.json").read_text())
            assert rec["status"] == "finished" and rec["sequences_seen"] == n
            m = pd.read_csv(d / f"runs/{arm}/seed{seed}/metrics.csv")
            assert m.sequences_seen.max() == n
    summary = pd.read_csv(d / "summary.csv").set_index(["arm", "seed"])
    assert summary.loc[("control", 0), "sequences_seen"] == 256 and summary.loc[("fast", 0), "sequences_seen"] == 128
    # a run that never crosses is censored at its own arm's last evaluation minus the rule's span (3 x 32)
    pt = pd.read_csv(d / "phase_times.csv")
    thr = pt[(pt.estimator == "threshold") & pt.censored]
    assert set(thr[thr.arm == "control"]["time"]) <= {256.0 - 96} and set(thr[thr.arm == "fast"]["time"]) <= {128.0 - 96}
    assert set(pt[pt.arm == "control"]["budget"]) == {256} and set(pt[pt.arm == "fast"]["budget"]) == {128}
    assert len(thr) == 4
    assert "arms with their own length: `control` 256 sequences" in (d / "report.md").read_text()
