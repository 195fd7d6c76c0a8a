"""No finished run is ever deleted or mixed with another configuration (issue 12, items 3 and the partial rerun).

Run keys (version 3) leave fields at their defaults out; a folder of an earlier key version is
recognised where its numbers are still what today's code computes (a foreign model's runs) and refused,
saying why, where they are not (packed runs before each run of a pack was updated on its own); a
changed run is moved aside (never deleted), and a partial rerun that would mix configurations is
refused before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

import clamp.model.transformer as transformer
from clamp.cli import main
from clamp.execution.plan import plan
from clamp.execution.runner import run_study
from clamp.model.config import ModelConfig
from clamp.model.foreign import hf_gpt2
from clamp.study.design import Arm, Study, StudyError
from clamp.study.load import load_study
from clamp.study.keys import KEY_VERSION, canonical, legacy_key, pack_independent, run_key, same_run
from clamp.study.overrides import apply_overrides, select
from clamp.tasks import FewShotConfig
from helpers import ROOT

# The quickstart as written by 72cb86d (run.json and metrics.csv of its 10 runs; checkpoints left out)
REF = ROOT / "tests" / "data" / "quickstart_72cb86d" / "quickstart"
MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def tiny(**kw) -> Study:
    base = dict(name="tiny", arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16),
                                   Arm(name="other", model=MODEL, task=TASK, lr=3e-3, batch_size=16)],
                seeds=[0, 1], n_sequences=64, eval_every=32, eval_size=16, checkpoint_every=32)
    base.update(kw)
    return Study(**base)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(study: Study, out: Path, **kw) -> int:
    return run_study(study, out=out, jobs=1, quiet=True, analyse=False, **kw)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelWithNewField(ModelConfig):
    """ModelConfig as it would be after a release that adds a field (at its default)."""

    new_knob: int = 0


def test_canonical_leaves_defaults_out():
    assert canonical(ModelConfig()) == {}
    assert canonical(ModelConfig(n_layers=1, d_in=4)) == {"n_layers": 1, "d_in": 4}
    assert canonical(ModelWithNewField(n_layers=1)) == canonical(ModelConfig(n_layers=1))
    assert canonical(ModelWithNewField(n_layers=1, new_knob=3)) == {"n_layers": 1, "new_knob": 3}


def test_adding_a_field_at_its_default_keeps_every_key(tmp_path, monkeypatch):
    s = tiny()
    keys = {(a.name, seed): run_key(s, a, seed) for a in s.arms for seed in s.seeds}
    assert len(set(keys.values())) == 4
    assert run(s, tmp_path) == 0
    before = digest(tmp_path / "tiny" / "runs")
    # the next release: ModelConfig gained a field; the study file is unchanged
    monkeypatch.setattr(transformer, "ModelConfig", ModelWithNewField)
    new = tiny(arms=[dataclasses.replace(a, model=ModelWithNewField(n_layers=2, n_heads=2, d_model=8)) for a in s.arms])
    assert {(a.name, seed): run_key(new, a, seed) for a in new.arms for seed in new.seeds} == keys
    assert legacy_key(new, new.arms[0], 0) != legacy_key(s, s.arms[0], 0)  # the old key would have changed
    p = plan(new, tmp_path / "tiny", select(new, None, None))
    assert len(p.skipped) == 4 and not p.jobs and not p.stale and not p.conflicts
    assert run(new, tmp_path) == 0
    assert digest(tmp_path / "tiny" / "runs") == before


def test_old_folders_are_recognised_only_where_their_numbers_stand(tmp_path):
    s = tiny(arms=[tiny().arms[0]], seeds=[0])
    assert run(s, tmp_path) == 0
    rec_path = tmp_path / "tiny/runs/control/seed0/run.json"
    rec = json.loads(rec_path.read_text())
    assert rec["key_version"] == KEY_VERSION == 3 and rec["hash"] == run_key(s, s.arms[0], 0)
    arm = s.arms[0]
    key, legacy = run_key(s, arm, 0), legacy_key(s, arm, 0)
    # a record of this version whose hash no longer matches, but whose recorded resolved config does
    assert same_run(rec | {"hash": "0" * 16}, key=key, legacy=legacy)
    # the same run as written before key version 3 (packed runs then depended on their pack): not the same run
    v2 = rec | {"key_version": 2, "hash": "0" * 16}
    v1 = {k: v for k, v in rec.items() if k != "key_version"} | {"hash": legacy}
    assert not same_run(v2, key=key, legacy=legacy) and not same_run(v1, key=key, legacy=legacy)
    # ... unless it is a foreign model's run (trained one run per process: its numbers stand)
    foreign = {"kind": "foreign", "factory": "clamp.model.adapters:gpt2_lm", "kwargs": {"n_layer": 1}}
    assert pack_independent({**v2, "config": {**v2["config"], "model": foreign}})
    # another configuration matches by neither
    other = apply_overrides(s, ["arms.control.lr=2e-3"])
    oa = other.arms[0]
    assert not same_run(rec, key=run_key(other, oa, 0), legacy=legacy_key(other, oa, 0))


def test_reference_quickstart_folder_is_refused_with_the_reason_and_kept(tmp_path, capsys):
    """A quickstart folder written before every run of a pack was updated on its own (72cb86d, key version 2): its
    runs are not what today's code computes, so a rerun refuses them, naming why and the fixes; --replace moves
    them aside, byte for byte, and trains the current ones."""
    shutil.copytree(REF, tmp_path / "quickstart")
    before = digest(tmp_path / "quickstart" / "runs")
    study = load_study(ROOT / "studies" / "quickstart.py")
    p = plan(study, tmp_path / "quickstart", select(study, None, None))
    assert not p.skipped and len(p.conflicts) == 10
    assert all("its numbers depended on the runs it was packed with" in e.why for e in p.conflicts)
    assert main(["run", str(ROOT / "studies" / "quickstart.py"), "--out", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "key version 2" in err and "--replace" in err and "--out" in err
    assert digest(tmp_path / "quickstart" / "runs") == before  # not a byte touched


def test_changed_checkpoint_every_refuses_then_moves_aside_with_replace(tmp_path, capsys):
    s = tiny(arms=[tiny().arms[0]])
    assert run(s, tmp_path) == 0
    before = digest(tmp_path / "tiny" / "runs")
    edited = apply_overrides(s, ["checkpoint_every=64"])
    with pytest.raises(StudyError, match=r"--replace.*|--out"):
        run(edited, tmp_path)
    assert digest(tmp_path / "tiny" / "runs") == before  # nothing written
    assert run(edited, tmp_path, replace=True) == 0
    after = digest(tmp_path / "tiny" / "runs")
    for seed in (0, 1):
        old_key = run_key(s, s.arms[0], seed)
        stale = {k.replace(f".stale/control/seed{seed}-{old_key}/", f"control/seed{seed}/"): v
                 for k, v in after.items() if k.startswith(f".stale/control/seed{seed}-{old_key}/")}
        assert stale == {k: v for k, v in before.items() if k.startswith(f"control/seed{seed}/")}
        new = json.loads((tmp_path / f"tiny/runs/control/seed{seed}/run.json").read_text())
        assert new["status"] == "finished" and new["hash"] == run_key(edited, edited.arms[0], seed)


def test_partial_rerun_with_override_never_replaces_or_mixes(tmp_path, capsys):
    """The issue's reproduction: --set n_sequences=... --seeds 0 --arms control in a finished folder."""
    f = tmp_path / "tiny_study.py"
    f.write_text(
        "from clamp import Arm, FewShotConfig, ModelConfig, Study\n"
        "m = ModelConfig(n_layers=2, n_heads=2, d_model=8)\n"
        "t = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)\n"
        "STUDY = Study(name='tiny', arms=[Arm(name=n, model=m, task=t, lr=1e-3, batch_size=16) "
        "for n in ('control', 'other')], seeds=[0, 1], n_sequences=64, eval_every=32, eval_size=16)\n")
    out = tmp_path / "res"
    assert main(["run", str(f), "--out", str(out), "--quiet", "--jobs", "1", "--no-report"]) == 0
    before = digest(out / "tiny")
    capsys.readouterr()
    for extra in ([], ["--replace"]):
        code = main(["run", str(f), "--out", str(out), "--quiet", "--jobs", "1", "--no-report",
                     "--set", "n_sequences=32", "--seeds", "0", "--arms", "control", *extra])
        err = capsys.readouterr().err
        assert code == 2 and "--out" in err and "two configurations" in err and "Traceback" not in err
        assert digest(out / "tiny") == before  # nothing replaced, nothing written
    # the whole study with --replace: every old run moved aside, none mixed
    assert main(["run", str(f), "--out", str(out), "--quiet", "--jobs", "1", "--no-report",
                 "--set", "n_sequences=32", "--replace"]) == 0
    recs = [json.loads(p.read_text()) for p in (out / "tiny/runs").glob("*/seed*/run.json")]
    assert len(recs) == 4 and {r["config"]["train"]["n_sequences"] for r in recs} == {32}
    assert len(list((out / "tiny/runs/.stale").glob("*/seed*/run.json"))) == 4


def test_unfinished_run_of_another_configuration_is_moved_aside_not_deleted(tmp_path):
    s = tiny(arms=[tiny().arms[0]], seeds=[0])
    assert run(s, tmp_path) == 0
    rec_path = tmp_path / "tiny/runs/control/seed0/run.json"
    rec = json.loads(rec_path.read_text())
    rec["status"] = "failed"
    rec_path.write_text(json.dumps(rec))
    edited = apply_overrides(s, ["arms.control.lr=2e-3"])
    assert run(edited, tmp_path) == 0  # no --replace needed: nothing finished is in the way
    moved = list((tmp_path / "tiny/runs/.stale/control").glob("seed0-*/run.json"))
    assert len(moved) == 1 and json.loads(moved[0].read_text())["status"] == "failed"
    assert json.loads(rec_path.read_text())["status"] == "finished"


LEGACY = ROOT / "tests" / "data" / "legacy_v1"


def test_folder_written_before_key_v2_is_refused_and_kept(tmp_path):
    """A results folder written by clamp 9f9b852 (keys v1, study.json schema 1): refused as trained before per-run
    updates, not a byte of a finished run touched."""
    shutil.copytree(LEGACY / "results", tmp_path / "out")
    runs = tmp_path / "out" / "tiny_legacy" / "runs"
    before = digest(runs)
    study = load_study(LEGACY / "tiny_legacy.py")
    p = plan(study, tmp_path / "out" / "tiny_legacy", select(study, None, None))
    assert not p.skipped and len(p.conflicts) == 4
    assert all("key version 1" in e.why for e in p.conflicts)
    with pytest.raises(StudyError, match="--replace"):
        run(study, tmp_path / "out")
    assert digest(runs) == before


def test_a_foreign_run_of_an_earlier_key_version_is_kept(tmp_path):
    """A foreign model trains one run per process, so its numbers never depended on a pack: a finished run
    written under key version 2 is recognised from its recorded config and skipped, not trained again."""
    s = Study(name="tiny", arms=[Arm(name="gpt2", model=hf_gpt2(n_layer=1, n_head=2, n_embd=8), task=TASK, lr=1e-3,
                                     batch_size=16)], seeds=[0], n_sequences=64, eval_every=32, eval_size=16)
    assert run(s, tmp_path) == 0
    rec_path = tmp_path / "tiny/runs/gpt2/seed0/run.json"
    rec = json.loads(rec_path.read_text())
    key, legacy = run_key(s, s.arms[0], 0), legacy_key(s, s.arms[0], 0)
    v2 = rec | {"key_version": 2, "hash": "0" * 16}
    assert same_run(v2, key=key, legacy=legacy)
    rec_path.write_text(json.dumps(v2))
    p = plan(s, tmp_path / "tiny", select(s, None, None))
    assert len(p.skipped) == 1 and not p.jobs and not p.stale and not p.conflicts
    # the built-in model's run of the same age is refused
    built_in = rec | {"key_version": 2, "hash": "0" * 16,
                      "config": {**rec["config"], "model": MODEL.to_dict()}}
    assert not same_run(built_in, key=key, legacy=legacy)
