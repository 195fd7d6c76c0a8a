"""Phase times relative to a per-run trigger (PhaseRule(relative_to=...)) on hand-built curves."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from clamp.analysis.stats.relative import relative_row
from clamp.phase import reference_rule, reference_time
from clamp.phase import PhaseRule
from clamp.analysis.stats.runs import RunRecord, phase_table
from clamp.errors import ConfigError

X = [0, 100, 200, 300, 400, 500]


def _run(seed: int, loss: list[float], trig: list[float] | None, status: str = "finished") -> RunRecord:
    rows = [{"sequences_seen": x, "metric": "train/loss", "value": v} for x, v in zip(X, loss)]
    if trig is not None:
        rows += [{"sequences_seen": x, "metric": "trigger/ko/start", "value": v} for x, v in zip(X, trig)]
    return RunRecord(arm="a", seed=seed, status=status, metrics=pd.DataFrame(rows))


def test_relative_times_on_hand_built_curves():
    rule = PhaseRule(relative_to="ko:start")
    runs = [
        _run(0, [0.7, 0.7, 0.7, 0.1, 0.1, 0.1], [0, 1, 1, 1, 1, 1]),  # trigger 100, phase 300 -> 200
        _run(1, [0.7, 0.7, 0.7, 0.7, 0.7, 0.1], [0, 0, 0, 1, 1, 1]),  # trigger 300, phase 500 -> 200
        _run(2, [0.7, 0.7, 0.7, 0.7, 0.7, 0.7], [0, 0, 1, 1, 1, 1]),  # trigger 200, censored at 500 -> 300
        _run(3, [0.7, 0.7, 0.1, 0.1, 0.1, 0.1], [0, 0, 0, 0, 0, 0]),  # trigger never fired
        _run(4, [0.7, 0.1, 0.1, 0.1, 0.1, 0.1], [0, 0, 0, 1, 1, 1]),  # phase change (100) before trigger (300)
        _run(5, [0.7, 0.7, 0.1, 0.1, 0.1, 0.1], None),  # no trigger rows at all
    ]
    t = phase_table(runs, (rule,))
    thr = t[t.estimator == "threshold"].set_index("seed")
    assert thr.loc[0, "time"] == 200 and thr.loc[0, "event"] and thr.loc[0, "included"]
    assert thr.loc[1, "time"] == 200 and thr.loc[1, "event"]
    assert thr.loc[2, "time"] == 300 and not thr.loc[2, "event"] and thr.loc[2, "censored"] and thr.loc[2, "included"]
    assert thr.loc[0, "reference_time"] == 100 and thr.loc[1, "reference_time"] == 300
    for s in (3, 5):  # reported, not dropped
        assert not thr.loc[s, "included"] and thr.loc[s, "reference"] == "never happened"
        assert "never happened" in thr.loc[s, "note"]
    assert not thr.loc[4, "included"] and thr.loc[4, "reference"] == "phase change before it" and thr.loc[4, "time"] == -200
    assert len(thr) == 6
    # the same table without relative_to: absolute times, no reference columns
    plain = phase_table(runs, (PhaseRule(),))
    assert "reference_time" not in plain.columns
    assert plain[(plain.estimator == "threshold") & (plain.seed == 0)]["time"].item() == 300


def test_relative_to_another_metric_and_rule_json():
    ref = reference_rule("prev_token/L0H1>0.5")
    assert reference_time([0, 10, 20, 30], [0.1, 0.4, 0.6, 0.3], ref) == 20.0
    assert math.isnan(reference_time([0, 10], [0.1, 0.2], ref))
    r = PhaseRule(relative_to="ko:start")
    assert PhaseRule.from_dict(r.to_dict()) == r and "relative_to" not in PhaseRule().to_dict()
    assert r.describe().endswith("timed from ko:start") and r.slug().endswith("_from-ko-start")
    assert reference_rule("ko/w1:stop").metric == "trigger/ko/w1/stop"
    with pytest.raises(ConfigError, match="relative_to"):
        PhaseRule(relative_to="not a reference")


def test_relative_row_is_pure():
    row = {"time": 50.0, "event": True, "included": True, "note": "x"}
    out = relative_row(row, 20.0, "ko:start")
    assert row == {"time": 50.0, "event": True, "included": True, "note": "x"} and out["time"] == 30.0


def test_first_crossing_on_the_relative_clock():
    rule = PhaseRule(relative_to="ko:start", persist="end")
    t = phase_table([_run(0, [0.7, 0.1, 0.7, 0.7, 0.7, 0.7], [0, 1, 1, 1, 1, 1])], (rule,))
    thr = t[t.estimator == "threshold"].iloc[0]
    assert thr["relapsed"] and not thr["event"] and thr["time"] == 400 and thr["first_crossing"] == 0


def test_runs_left_out_under_relative_to_are_counted_and_explained_in_the_comparison():
    from clamp.analysis.stats.pipeline import compare_arms
    from clamp.analysis.stats.runs import StudySpec
    from clamp.analysis.stats.sentences import comparison_sentence

    rule = PhaseRule(relative_to="ko:start")
    runs = [_run(0, [0.7, 0.7, 0.7, 0.1, 0.1, 0.1], [0, 1, 1, 1, 1, 1]),
            _run(1, [0.7, 0.7, 0.7, 0.7, 0.7, 0.1], [0, 0, 0, 1, 1, 1]),
            _run(3, [0.7, 0.7, 0.1, 0.1, 0.1, 0.1], [0, 0, 0, 0, 0, 0]),  # trigger never fired
            _run(4, [0.7, 0.1, 0.1, 0.1, 0.1, 0.1], [0, 0, 0, 1, 1, 1])]  # phase change before the trigger
    control = [RunRecord(arm="c", seed=s, status="finished", metrics=r.metrics) for s, r in enumerate(runs[:2])]
    table = phase_table(runs + control, (rule,))
    spec = StudySpec.from_dict({"name": "r", "seeds": [0, 1, 3, 4], "control": "c",
                                "arms": [{"name": "c"}, {"name": "a"}], "phase": rule.to_dict()})
    row = compare_arms(table, spec, n_boot=200, estimators=("threshold",)).iloc[0]
    assert row.n_excluded == 2
    assert row.excluded_note == ("1 run whose reference event never happened; 1 run whose phase change came before "
                                 "its reference event")
    assert comparison_sentence(row, control="c").endswith(
        "left out: 1 run whose reference event never happened; 1 run whose phase change came before its reference "
        "event.")
