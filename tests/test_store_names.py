"""The results files and metric names have one home each: one metrics.csv writer, one reader, one name scheme."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from clamp.errors import ConfigError
from clamp.names import (RESERVED_PREFIXES, check_user_metric_name, fired, head, is_reserved, parse_head, trigger,
                         user_metric)
from clamp.store import (METRICS_HEADER, append_metrics, last_evaluation, metric_rows_text, read_curve,
                         read_metric_rows, trigger_events)
from helpers import ROOT



def test_writer_and_reader_round_trip_quoted_names_and_nan(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text(METRICS_HEADER)
    append_metrics(p, 0, 3, {"train/loss": 0.6931471805599453, "fired/a,b": 2.0, "odd": float("nan")})
    append_metrics(p, 32, 3, {"train/loss": 0.25})
    rows = read_metric_rows(p)
    assert rows.metric == ["fired/a,b", "odd", "train/loss", "train/loss"]  # sorted per evaluation, file order kept
    assert rows.seen.tolist() == [0, 0, 0, 32] and rows.run == ["3"] * 4
    assert rows.value[2] == 0.6931471805599453 and math.isnan(rows.value[1])
    assert read_curve(p, "train/loss") == ([0, 32], [0.6931471805599453, 0.25])
    assert read_curve(p, "train/loss", up_to=0) == ([0], [0.6931471805599453])
    assert last_evaluation(p) == 32


def test_reader_refuses_a_foreign_header_and_skips_torn_rows(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("a,b,c,d\n1,2,3,4\n")
    with pytest.raises(ConfigError, match="header"):
        read_metric_rows(p)
    p.write_text(METRICS_HEADER + "0,0,train/loss,0.5\n0,0,train/loss\n32,0,train/loss,not-a-number\n")
    rows = read_metric_rows(p)
    assert len(rows) == 2 and math.isnan(rows.value[1])


def test_trigger_events_read_the_first_detection(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text(METRICS_HEADER)
    for seen, v in ((0, 0.0), (32, 1.0), (64, 1.0)):
        append_metrics(p, seen, 0, {trigger("ko", "start"): v, "train/loss": 0.5})
    assert trigger_events(p, up_to=64) == {"trigger/ko/start": 32}
    assert trigger_events(p, up_to=16) == {}


def test_the_worker_writes_exactly_what_the_old_writer_wrote():
    # repr(float) values, rows sorted by name, one line per metric, \n-terminated: byte-identical results
    assert metric_rows_text(128, 2, {"b": 0.1, "a": 1}) == "128,2,a,1.0\n128,2,b,0.1\n"


def test_name_schemes():
    assert head("prev_token", 0, 3) == "prev_token/L0H3" and parse_head("prev_token/L0H3") == ("prev_token", 0, 3)
    assert parse_head("train/loss") is None
    assert fired("ko") == "fired/ko" and trigger("ko", "stop", 1) == "trigger/ko/w1/stop"
    assert user_metric("f") == "f" and user_metric("f", "x") == "f/x" and user_metric("f", "f/x") == "f/x"
    for name in ("interventions/fired", "fired/x", "trigger/x/start", "train_batch/loss"):
        assert is_reserved(name)
        with pytest.raises(ConfigError, match="reserved"):
            check_user_metric_name(name, "metric function 'f'")
    assert not is_reserved("train/loss") and "trigger/" in RESERVED_PREFIXES


def _calls(path: Path, dotted: str) -> list[int]:
    mod, attr = dotted.rsplit(".", 1)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == mod:
            out.append(node.lineno)
    return out


def test_one_metrics_writer_and_one_reader():
    """Only clamp/store.py parses or writes CSV rows with the csv module (bench writes its own report)."""
    offenders = []
    for path in sorted((ROOT / "clamp").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ("clamp/store.py", "clamp/bench/throughput.py", "clamp/bench/__init__.py"):
            continue
        for call in ("csv.reader", "csv.DictReader", "csv.writer"):
            offenders += [f"{rel}:{n} {call}" for n in _calls(path, call)]
    assert not offenders, offenders
    assert "def read_metric_rows" in (ROOT / "clamp/store.py").read_text()
    defs = [p for p in (ROOT / "clamp").rglob("*.py") if "def read_metric_rows" in p.read_text()
            or "def metric_rows_text" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in defs] == ["clamp/store.py"]


def test_two_metric_functions_with_one_name_are_refused_before_training():
    import clamp
    from clamp.study.design import Arm, Study

    def loss_gap(view):
        return view.logits.mean((1, 2, 3))

    other = type(loss_gap)(loss_gap.__code__, {}, "loss_gap")
    arm = Arm(name="control", model=clamp.ModelConfig(n_layers=1, n_heads=2, d_model=8),
              task=clamp.FewShotConfig(n_classes=10, d_in=8))
    with pytest.raises(ConfigError, match="two functions named 'loss_gap'"):
        Study(name="s", arms=[arm], seeds=[0], n_sequences=64, eval_every=32, metrics=[loss_gap, other])

    def trigger(view):  # its own name is not reserved ...
        return view.logits.mean((1, 2, 3))

    Study(name="s", arms=[arm], seeds=[0], n_sequences=64, eval_every=32, metrics=[trigger])
