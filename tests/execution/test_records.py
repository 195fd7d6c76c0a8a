"""What a run leaves on disk can be trusted: real CSV quoting, provenance per run, study.json history."""

from __future__ import annotations

import csv
import json

import pandas as pd

from clamp.execution.provenance import RUN_SCHEMA, STUDY_SCHEMA, merge_study_record
from clamp.execution.runner import run_study
from clamp.store import csv_text
from clamp.interventions import knockout_heads
from clamp.model.config import ModelConfig
from clamp.study.design import Arm, Study
from clamp.tasks import FewShotConfig

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
NASTY = 'ko,"keep"0'


def study(**kw) -> Study:
    base = dict(name="rec", arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16,
                                      interventions=[knockout_heads(layer=1, keep=[0], name=NASTY)])],
                seeds=[0], n_sequences=64, eval_every=32, eval_size=16, checkpoint_every=32)
    base.update(kw)
    return Study(**base)


def test_csv_text_quotes_commas_and_quotes():
    text = csv_text([[0, 1, f"fired/{NASTY}", "1.0"]])
    assert list(csv.reader([text.rstrip("\n")])) == [["0", "1", f"fired/{NASTY}", "1.0"]]


def test_metric_name_with_comma_and_quote_survives_metrics_csv(tmp_path):
    assert run_study(study(), out=tmp_path, jobs=1, quiet=True, analyse=False) == 0
    path = tmp_path / "rec/runs/control/seed0/metrics.csv"
    df = pd.read_csv(path)
    assert list(df.columns) == ["sequences_seen", "run", "metric", "value"]
    assert f"fired/{NASTY}" in set(df["metric"])
    assert all(len(r) == 4 for r in csv.reader(path.open()))
    assert df["value"].notna().all()


def test_provenance_in_run_json_and_study_history(tmp_path):
    s = study()
    assert run_study(s, out=tmp_path, jobs=1, quiet=True, analyse=False) == 0
    rec = json.loads((tmp_path / "rec/runs/control/seed0/run.json").read_text())
    assert rec["schema_version"] == RUN_SCHEMA
    prov = rec["provenance"]
    assert prov["code_revision"] and "code_dirty" in prov
    assert {"torch", "nnsight", "numpy", "scipy", "pandas", "clamp", "python"} <= set(prov["versions"])
    assert prov["versions"]["torch"] != "not installed"
    assert prov["kernels"].split(":")[0] in ("native", "torch")
    assert prov["machine"]["host"] and prov["machine"]["cores"]
    assert prov["started_at"] <= prov["ended_at"]
    first = json.loads((tmp_path / "rec/study.json").read_text())
    assert first["schema_version"] == STUDY_SCHEMA and len(first["invocations"]) == 1
    # a second invocation (here: a second seed) appends to the history; the first is kept as it was
    assert run_study(study(seeds=[0, 1]), out=tmp_path, jobs=1, quiet=True, analyse=False) == 0
    second = json.loads((tmp_path / "rec/study.json").read_text())
    assert second["invocations"][0] == first["invocations"][0] and len(second["invocations"]) == 2
    assert second["invocations"][1]["selected"]["skipped"] == 1 and second["seeds"] == [0, 1]


def test_study_json_written_before_history_becomes_the_first_invocation():
    old = {"name": "q", "code_revision": "abc", "versions": {"torch": "2.4"}, "written_at": "then", "command": "clamp run"}
    this = {"code_revision": "def", "written_at": "now", "command": "clamp run again"}
    out = merge_study_record(old, {"name": "q"}, this)
    assert out["invocations"][0]["code_revision"] == "abc" and out["invocations"][1] is this
    assert out["code_revision"] == "def" and out["schema_version"] == STUDY_SCHEMA
