"""Bad input and environment faults: one message naming the problem and the fix, exit 2, no traceback,
nothing written (issue 12 item 7 and its closing list)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

import clamp.execution.pack as pack
import clamp.store as validate
from clamp.cli import main
from clamp.execution.pack import exploded

STUDY = """\
from clamp import Arm, Dense, FewShotConfig, ModelConfig, Study
m = ModelConfig(n_layers=2, n_heads=2, d_model=8)
t = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
KW = dict(n_sequences=128, eval_every=32, eval_size=16, checkpoint_every=64)
KW.update(dict({extra}))
STUDY = Study(name="inp", arms=[Arm(name="control", model=m, task=t, lr={lr}, batch_size=16)], seeds=[0, 1], **KW)
"""


def study_file(tmp_path: Path, lr: float = 1e-3, extra: str = "") -> Path:
    p = tmp_path / "inp.py"
    p.write_text(STUDY.format(lr=lr, extra=extra))
    return p


def refused(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("clamp: error:") == 1, err
    for w in words:
        assert w in err, err
    return err


def test_out_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = main(["run", str(study_file(tmp_path)), "--out", str(tmp_path / "afile" / "res"), "--quiet"])
    refused(capsys, code, "is a file, not a folder", "--out")
    code = main(["run", str(study_file(tmp_path)), "--out", str(tmp_path / "afile" / "res"), "--dry-run"])
    refused(capsys, code, "is a file, not a folder")


def test_read_only_output_folder(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the check see what an ordinary user would
        real = os.access
        monkeypatch.setattr(validate.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    try:
        code = main(["run", str(study_file(tmp_path)), "--out", str(ro / "res"), "--quiet"])
        refused(capsys, code, "not writable", "--out")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_disk_full_while_writing_results_is_reported_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    f = study_file(tmp_path)
    main(["run", str(f), "--out", str(tmp_path / "clean"), "--quiet", "--jobs", "1", "--no-report"])
    real, calls = pack.append_text, {"n": 0}

    def full_after_three(path, text):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text)

    monkeypatch.setattr(pack, "append_text", full_after_three)
    out = tmp_path / "res"
    code = main(["run", str(f), "--out", str(out), "--quiet", "--jobs", "1", "--no-report"])
    err = refused(capsys, code, "no space left", "rerun the same command")
    assert "OSError" not in err
    statuses = {json.loads(p.read_text())["status"] for p in out.glob("inp/runs/*/seed*/run.json")}
    assert statuses == {"failed"}  # truthful: nothing is left marked running
    monkeypatch.setattr(pack, "append_text", real)  # space freed
    assert main(["run", str(f), "--out", str(out), "--quiet", "--jobs", "1", "--no-report"]) == 0
    for seed in (0, 1):
        a = pd.read_csv(out / f"inp/runs/control/seed{seed}/metrics.csv")
        b = pd.read_csv(tmp_path / f"clean/inp/runs/control/seed{seed}/metrics.csv")
        pd.testing.assert_frame_equal(a, b)


def test_disk_full_while_saving_a_checkpoint_says_so_in_plain_words(tmp_path, capsys, monkeypatch):
    f = study_file(tmp_path)

    def torch_full(path, obj):  # what torch.save raises when its zip writer runs out of space
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 960")

    monkeypatch.setattr(pack, "atomic_torch_save", torch_full)
    out = tmp_path / "res"
    code = main(["run", str(f), "--out", str(out), "--quiet", "--jobs", "1", "--no-report"])
    err = refused(capsys, code, "no space left", "rerun the same command")
    assert "Traceback" not in err and "RuntimeError" not in err.splitlines()[-1]
    rec = json.loads((out / "inp/runs/control/seed0/run.json").read_text())
    assert rec["status"] == "failed" and rec["error"].startswith("no space left on the device holding the results")


def test_disk_full_while_building_the_report_prints_no_traceback(tmp_path, capsys, monkeypatch):
    f = study_file(tmp_path)
    out = tmp_path / "res"
    assert main(["run", str(f), "--out", str(out), "--quiet", "--jobs", "1", "--no-report"]) == 0
    capsys.readouterr()
    import clamp.analysis.plots as plots

    def full(fig, stem, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(stem))

    monkeypatch.setattr(plots, "save_figure", full)
    code = main(["report", str(out / "inp"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "no space left" in err and "clamp report" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_dry_run_states_the_evaluation_grid_and_a_window_that_outlasts_the_run(tmp_path, capsys):
    """Evaluations snap to batch boundaries and a window can reach past the run: --dry-run says both."""
    p = tmp_path / "grid.py"
    p.write_text(STUDY.format(lr=1e-3, extra="").replace("n_sequences=128, eval_every=32", "n_sequences=120, eval_every=40")
                 .replace("from clamp import Arm,", "from clamp import Knockout, Window, Arm,")
                 .replace("batch_size=16)]", "batch_size=16), Arm(name='ko', model=m, task=t, lr=1e-3, batch_size=16, "
                          "interventions=[Knockout(name='ko', site='blocks.0.attn.hook_pattern', heads=[0], "
                          "windows=[Window(start=0, stop=500)])])]"))
    assert main(["run", str(p), "--out", str(tmp_path / "res"), "--dry-run"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert ("grid   evaluations every 40 sequences, at the first batch boundary (batch 16) at or past each multiple: "
            "0, 48, 80, 128, … and at the end; a run of 120 sequences ends at 128 (rounded up to a whole batch)") in out
    assert "note   arm 'ko': ko's window 0–500 outlasts the run (128 sequences): it stays on to the end of training" in out
    assert not (tmp_path / "res").exists()


def test_cuda_device_on_cpu_only_torch(tmp_path, capsys):
    code = main(["train", "--device", "cuda", "--sequences", "64", "--eval-every", "32",
                 "--metrics", str(tmp_path / "m.csv"), "--quiet"])
    refused(capsys, code, "--device='cuda'", "device='cpu'")
    assert not (tmp_path / "m.csv").exists()
    code = main(["run", str(study_file(tmp_path, extra='device="cuda:3"')), "--out", str(tmp_path / "r"), "--quiet"])
    refused(capsys, code, "Study.device='cuda:3'")
    assert not (tmp_path / "r").exists()


def test_train_eval_every_longer_than_the_run(tmp_path, capsys):
    code = main(["train", "--sequences", "100", "--eval-every", "1000", "--metrics", str(tmp_path / "m.csv")])
    refused(capsys, code, "--eval-every 1,000 is longer than the run")


@pytest.mark.parametrize("extra, words", [
    ("eval_every=1000", ["eval_every=1,000 is longer than the run", "eval_every <= 128"]),
    ("dense=[Dense(start=0, stop=64, eval_every=100)]", ["longer than the window itself"]),
])
def test_impossible_schedules_are_rejected(tmp_path, capsys, extra, words):
    code = main(["run", str(study_file(tmp_path, extra=extra)), "--out", str(tmp_path / "r"), "--quiet"])
    refused(capsys, code, *words)
    assert not (tmp_path / "r").exists()


def test_arm_without_model_or_task(tmp_path, capsys):
    p = tmp_path / "s.py"
    p.write_text("from clamp import Arm, Study\nSTUDY = Study(name='x', arms=[Arm(name='a', lr=1e-3)], "
                 "n_sequences=100, eval_every=50)\n")
    refused(capsys, main(["run", str(p), "--out", str(tmp_path / "r")]), "Arm 'a' has no model=")


def test_exploding_loss_without_nan_is_diverged_not_finished(tmp_path, capsys):
    assert exploded(7.6e11, 1.6) and not exploded(1.7, 1.6)
    code = main(["run", str(study_file(tmp_path, lr=10.0)), "--out", str(tmp_path / "r"), "--quiet", "--jobs", "1",
                 "--no-report"])
    assert code == 1
    for seed in (0, 1):
        rec = json.loads((tmp_path / f"r/inp/runs/control/seed{seed}/run.json").read_text())
        assert rec["status"] == "diverged" and "starting value" in rec["error"]


def test_analyse_without_arm_answers_in_words(tmp_path, capsys):
    d = tmp_path / "s"
    d.mkdir()
    (d / "study.json").write_text(json.dumps({"name": "s", "arms": [
        {"name": "control", "interventions": [{"kind": "knockout"}]},
        {"name": "clamped", "interventions": [{"kind": "knockout"}]}]}))
    err = refused(capsys, main(["analyse", str(d)]), "--arm", "control or clamped")
    assert "arm=" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("clamp ")


def test_python_api_validates_before_writing(tmp_path):
    from clamp.execution.runner import run_study
    from clamp.interventions import knockout_heads
    from clamp.model.config import ModelConfig
    from clamp.study.design import Arm, Study, StudyError
    from clamp.tasks import FewShotConfig

    m = ModelConfig(n_layers=2, n_heads=2, d_model=8)
    t = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
    bad = Study(name="api", arms=[Arm(name="a", model=m, task=t, interventions=[knockout_heads(layer=5, keep=[0])])],
                seeds=[0], n_sequences=64, eval_every=32, eval_size=16)
    with pytest.raises(StudyError, match="arm 'a'"):
        run_study(bad, out=tmp_path / "r", jobs=1, quiet=True, analyse=False)
    assert not (tmp_path / "r").exists()
