"""A worker that dies fails only its own pack; the runner goes on with a fresh pool (issue 12 item 6, 8)."""

from __future__ import annotations

import json

import pytest

from clamp.errors import ConfigError
from clamp.execution import faults
from clamp.execution.runner import run_study
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study
from clamp.tasks import FewShotConfig

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def study() -> Study:
    return Study(name="faults", arms=[Arm(name=n, model=MODEL, task=TASK, lr=1e-3, batch_size=16) for n in "abc"],
                 seeds=[0, 1], n_sequences=128, eval_every=32, eval_size=16, checkpoint_every=64)


def test_fault_rules_parse_and_reject_malformed():
    (f,) = faults.parse("kill:b:*:64")
    assert f.matches("b", [0, 1], 64) and not f.matches("b", [0], 63) and not f.matches("a", [0], 100)
    with pytest.raises(ConfigError, match="kill:<arm>"):
        faults.parse("kill:b:64")


@pytest.mark.slow
def test_worker_killed_fails_only_its_pack_and_the_rest_go_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(faults.ENV, "kill:b:*:96")  # the worker training arm b is SIGKILLed at 96 sequences
    assert run_study(study(), out=tmp_path, jobs=2, quiet=True, analyse=False) == 1
    status = {(a, s): json.loads((tmp_path / f"faults/runs/{a}/seed{s}/run.json").read_text())
              for a in "abc" for s in (0, 1)}
    assert {k: v["status"] for k, v in status.items()} == {
        ("a", 0): "finished", ("a", 1): "finished", ("b", 0): "failed", ("b", 1): "failed",
        ("c", 0): "finished", ("c", 1): "finished"}
    assert "SIGKILL" in status[("b", 0)]["error"] and "rerun" in status[("b", 0)]["error"]
    # a rerun without the fault resumes b and leaves the finished arms alone
    monkeypatch.delenv(faults.ENV)
    before = {a: (tmp_path / f"faults/runs/{a}/seed0/metrics.csv").read_bytes() for a in "ac"}
    assert run_study(study(), out=tmp_path, jobs=2, quiet=True, analyse=False) == 0
    assert {a: (tmp_path / f"faults/runs/{a}/seed0/metrics.csv").read_bytes() for a in "ac"} == before
    rec = json.loads((tmp_path / "faults/runs/b/seed0/run.json").read_text())
    assert rec["status"] == "finished" and rec["resumed_from"] == 64


def test_injected_exception_fails_only_its_pack_inline(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.ENV, "raise:a:*:32")
    assert run_study(study(), out=tmp_path, jobs=1, quiet=True, analyse=False) == 1
    st = {a: json.loads((tmp_path / f"faults/runs/{a}/seed0/run.json").read_text())["status"] for a in "abc"}
    assert st == {"a": "failed", "b": "finished", "c": "finished"}


def test_broken_statistics_import_is_reported_not_skipped(tmp_path, monkeypatch, capsys):
    import sys

    from clamp.execution.runner import finish_study

    s = Study(name="faults", arms=[Arm(name="a", model=MODEL, task=TASK, lr=1e-3, batch_size=16)],
              seeds=[0], n_sequences=64, eval_every=32, eval_size=16)
    assert run_study(s, out=tmp_path, jobs=1, quiet=True, analyse=False) == 0
    # a broken import inside the statistics package (None in sys.modules makes any import of it raise ImportError,
    # whatever was imported before in this process)
    monkeypatch.setitem(sys.modules, "clamp.analysis.stats.pipeline", None)
    assert finish_study(tmp_path / "faults", quiet=True) == 1
    assert "statistics failed to import" in capsys.readouterr().err
