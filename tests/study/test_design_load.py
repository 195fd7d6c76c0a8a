"""Study files: loading, the errors for malformed files, overrides, run keys."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from clamp.model.config import ModelConfig
from clamp.study.overrides import apply_overrides, select
from clamp.study.design import Arm, Dense, Study, StudyError
from clamp.study.load import list_studies, load_study
from clamp.study.keys import run_key
from clamp.study.records import study_record
from clamp.tasks import FewShotConfig
from helpers import ROOT

HEADER = """\
from clamp.study.design import Arm, Study, Dense
from clamp.model.config import ModelConfig
from clamp.tasks import FewShotConfig
model = ModelConfig(n_layers=2, n_heads=2, d_model=8)
task = FewShotConfig(n_classes=10, d_in=8)
"""


def write(tmp_path: Path, body: str, name: str = "s.py") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + textwrap.dedent(body))
    return p


def tiny(**kw) -> Study:
    model = ModelConfig(n_layers=2, n_heads=2, d_model=8)
    task = FewShotConfig(n_classes=10, d_in=8)
    base = dict(name="t", arms=[Arm(name="control", model=model, task=task), Arm(name="clamped", model=model, task=task)],
                seeds=[0, 1], n_sequences=256, eval_every=64, eval_size=16)
    base.update(kw)
    return Study(**base)


def test_load_valid_study(tmp_path):
    p = write(tmp_path, 'STUDY = Study(name="ok", arms=[Arm(name="control", model=model, task=task)], seeds=[0, 1], n_sequences=100, eval_every=50)\n')
    s = load_study(p)
    assert s.name == "ok" and s.seeds == (0, 1) and s.control == "control"
    assert s.arms[0].origin.endswith(f"{p}:6")


def test_defaults_are_sensible():
    s = Study(name="d", arms=[Arm(name="a", model=ModelConfig(), task=FewShotConfig())])
    assert s.seeds == (0, 1, 2) and s.control is None and s.phase[0].metric == "train/loss"
    assert s.checkpoint_points(s.arms[0])[0] == 0 and s.checkpoint_points(s.arms[0])[-1] >= s.n_sequences


@pytest.mark.parametrize("body, line, words", [
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model task=task)])\n", 6, ["syntax error", "Fix"]),
    ("X = 1\n", None, ["no module-level STUDY", "STUDY = Study("]),
    ("STUDY = Arm(name='a', model=model, task=task)\n", None, ["STUDY is a Arm", "clamp.Study"]),
    ("a = Arm(name='a', model=model, task=task)\nSTUDY = Study(name='x', arms=[a, a])\n", 7, ["duplicate arm names ['a']"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model, task=task)], seeds=[])\n", 6, ["no seeds", "seeds=[0, 1, 2]"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model, task=task, lrr=1e-3)])\n", 6, ["Arm has no field 'lrr'", "did you mean 'lr'"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model, task=task)], n_sequnces=5)\n", 6, ["Study has no field 'n_sequnces'"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model, task=task, lr='fast')])\n", 6, ["Arm.lr expects float", "'fast'"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model, task=task, schedule='linear')])\n", 6, ["Arm.schedule", "'constant' or 'cosine'"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a b', model=model, task=task)])\n", 6, ["not folder-safe"]),
    ("STUDY = Study(name='x', arms=[])\n", 6, ["no arms"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model, task=task)], control='b')\n", 6, ["control='b' is not an arm"]),
    ("import nonexistent_module_xyz\n", 6, ["ModuleNotFoundError"]),
    ("STUDY = Study('x', [Arm(name='a', model=model, task=task)])\n", 6, ["keyword arguments"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', task=task)])\n", 6, ["Arm 'a' has no model=", "model=clamp.ModelConfig("]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model)])\n", 6, ["Arm 'a' has no task=", "task=clamp.FewShotConfig()"]),
    ("STUDY = Study(name='x', arms=[Arm(name='a', model=model, task=task)], n_sequences=100)\n", 6,
     ["eval_every=1,000 is longer than the run", "eval_every <= 100"]),
])
def test_malformed_files_name_file_line_and_fix(tmp_path, body, line, words):
    p = write(tmp_path, body)
    with pytest.raises(StudyError) as err:
        load_study(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}:{line}:" if line else f"{p}:"), msg
    for w in words:
        assert w in msg, msg


def test_arm_that_does_not_fit_its_task_names_the_arm_line(tmp_path):
    p = write(tmp_path, "bad = Arm(name='wide', model=ModelConfig(n_layers=2, n_heads=2, d_model=8, d_in=3), task=task)\n"
                        "STUDY = Study(name='x', arms=[bad])\n")
    with pytest.raises(StudyError, match=rf"{p}:6: arm 'wide': ModelConfig.d_in=3 does not match the task"):
        load_study(p)


def test_missing_file_suggests_a_close_name(tmp_path):
    write(tmp_path, "STUDY = None\n", name="quickstart.py")
    with pytest.raises(StudyError, match="Did you mean .*quickstart.py"):
        load_study(tmp_path / "quickstrat.py")


def test_bad_intervention_fails_at_load(tmp_path):
    pytest.importorskip("clamp.interventions")
    p = write(tmp_path, "from clamp.interventions import match_clamp\n"
                        "STUDY = Study(name='x', arms=[Arm(name='a', model=model, task=task, interventions=[match_clamp(layer=1, head=5)])])\n")
    with pytest.raises(StudyError, match="arm 'a'"):
        load_study(p)


def test_interventions_must_be_interventions():
    with pytest.raises(Exception, match="not an intervention"):
        Arm(name="a", model=ModelConfig(), task=FewShotConfig(), interventions=["match_clamp"])


def test_overrides_parse_by_field_type():
    s = apply_overrides(tiny(), ["arms.control.lr=3e-5", "arms.*.model.d_model=16", "n_sequences=1e3",
                                 "seeds=0,1,2", "arms.clamped.schedule=cosine", "arms.clamped.betas=0.8,0.9",
                                 "checkpoint_every=none"])
    assert s.arm("control").lr == 3e-5 and s.arm("clamped").lr == 1e-5
    assert {a.model.d_model for a in s.arms} == {16}
    assert s.n_sequences == 1000 and s.seeds == (0, 1, 2) and s.checkpoint_every is None
    assert s.arm("clamped").schedule == "cosine" and s.arm("clamped").betas == (0.8, 0.9)


@pytest.mark.parametrize("item, words", [
    ("arms.control.lr=fast", ["lr expects float", "'fast'"]),
    ("arms.control.lrr=1", ["Arm has no field 'lrr'", "Did you mean 'lr'"]),
    ("arms.nope.lr=1", ["no arm 'nope'", "['control', 'clamped']"]),
    ("arms.control.schedule=linear", ["'constant' or 'cosine'"]),
    ("n_sequences=1.5", ["n_sequences expects int"]),
    ("seeds=", ["no seeds"]),
    ("arms.control.interventions=[]", ["cannot be set from the command line"]),
    ("arms.control.model.d_model=7", ["not divisible"]),
    ("lr", ["expected FIELD=VALUE"]),
    ("arms.control=1", ["arms.<arm name or *>.<field>"]),
])
def test_bad_overrides_are_clear(item, words):
    with pytest.raises(StudyError) as err:
        apply_overrides(tiny(), [item])
    for w in words:
        assert w in str(err.value), str(err.value)


def test_select_and_unknown_picks():
    s = tiny()
    assert [(a.name, seed) for a, seed in select(s, ["clamped"], [1])] == [("clamped", 1)]
    assert len(select(s)) == 4
    with pytest.raises(StudyError, match="no such arm"):
        select(s, ["x"])
    with pytest.raises(StudyError, match="not one of the study's seeds"):
        select(s, None, [7])


def test_run_hash_keys_on_results_not_labels():
    s = tiny()
    a = s.arm("control")
    h = run_key(s, a, 0)
    assert h == run_key(s, a, 0) and h != run_key(s, a, 1)
    relabelled = apply_overrides(s, ["arms.control.description=hello"])
    assert run_key(relabelled, relabelled.arm("control"), 0) == h
    edited = apply_overrides(s, ["arms.control.lr=2e-5"])
    assert run_key(edited, edited.arm("control"), 0) != h
    assert run_key(edited, edited.arm("clamped"), 0) == run_key(s, s.arm("clamped"), 0)


def test_schedule_points_round_to_batches_and_include_dense_window():
    s = tiny(checkpoint_every=100, dense=Dense(start=100, stop=160, eval_every=10, checkpoint_every=30))
    arm = s.arm("control")  # batch 32
    assert s.checkpoint_points(arm) == [0, 128, 160, 224, 256]
    assert s.extra_eval_points(arm) == [128, 160]


def test_study_record_schema():
    s = tiny(comparisons=[["clamped", "control"]])
    rec = study_record(s)
    assert rec["control"] == "control" and rec["comparisons"] == [["clamped", "control"]]
    # the default persistence span is written out: three evaluation intervals (eval_every 64 here)
    assert rec["phase"] == {"metric": "train/loss", "threshold": pytest.approx(0.2772588722), "direction": "below",
                            "persist": 3 * s.eval_every}
    arm = rec["arms"][0]
    assert set(arm) >= {"name", "factors", "model", "task", "train", "interventions", "hash"}
    assert arm["model"]["d_in"] == 8 and arm["train"]["n_sequences"] == 256


def test_list_studies_reports_broken_files(tmp_path):
    write(tmp_path, "STUDY = Study(name='good', arms=[Arm(name='a', model=model, task=task)])\n", name="good.py")
    write(tmp_path, "STUDY = 3\n", name="bad.py")
    found = dict((p.name, s) for p, s in list_studies(tmp_path))
    assert isinstance(found["good.py"], Study) and isinstance(found["bad.py"], StudyError)


def test_repo_studies_load():
    root = ROOT / "studies"
    for path, study in list_studies(root):
        assert isinstance(study, Study), f"{path}: {study}"
