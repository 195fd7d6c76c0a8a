"""What the report says and draws about windows, rules and the evaluation grid (words that misled a new user).

Each test names the wrong sentence or missing mark it replaces.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.patches import Rectangle

from clamp.analysis.metrics import trigger_times
from clamp.analysis.plots import curves_figure
from clamp.analysis.summary import grid_words, rule_words, window_words
from clamp.training.config import TrainConfig

STOP_ON_EVENT = {"start": 0, "stop": {"when": "train/loss", "op": "<", "threshold": 0.5}}
FIXED = {"start": 10, "stop": 30}


def _study(closed_windows: list[dict]) -> dict:
    return {"arms": [{"name": "control", "interventions": []},
                     {"name": "closed", "interventions": [{"kind": "knockout", "name": "ko", "windows": closed_windows}]}]}


def _df() -> pd.DataFrame:
    """Two arms x two seeds; the closed arm's trigger fires at 20 for seed 0 and at 30 for seed 1."""
    rows = []
    for arm in ("control", "closed"):
        for seed, fire in ((0, 20), (1, 30)):
            for x in (0, 10, 20, 30, 40):
                rows.append({"arm": arm, "seed": seed, "sequences_seen": x, "metric": "train/loss", "value": 0.7 - x / 100})
                if arm == "closed":
                    rows.append({"arm": arm, "seed": seed, "sequences_seen": x, "metric": "trigger/ko/stop",
                                 "value": float(x >= fire)})
    return pd.DataFrame(rows)


def _bars(ax) -> list[tuple[float, float]]:
    """Horizontal segments drawn in axes coordinates along the bottom (one per run's triggered window)."""
    out = []
    for line in ax.get_lines():
        x, y = line.get_xdata(), line.get_ydata()
        if len(x) == 2 and y[0] == y[1] and y[0] < 0.2 and line.get_linewidth() >= 3:
            out.append((float(x[0]), float(x[1])))
    return sorted(out)


def test_triggered_windows_are_drawn_per_run_where_their_events_put_them():
    df = _df()
    assert trigger_times(df, "closed") == [("trigger/ko/stop", 0, 20.0), ("trigger/ko/stop", 1, 30.0)]
    fig = curves_figure(df, ["control", "closed"], "train/loss", "t", study=_study([STOP_ON_EVENT]), control="control")
    ax = fig.axes[0]
    assert _bars(ax) == [(0.0, 20.0), (0.0, 30.0)]  # the runs' windows differ, so each has its own bar
    assert any("triggered window (one bar per run)" in t.get_text() for t in ax.get_legend().get_texts())


def test_fixed_windows_are_shaded():
    """Fixed windows were not drawn at all (triggered ones were): now a shaded span, once per arm."""
    fig = curves_figure(_df(), ["control", "closed"], "train/loss", "t", study=_study([FIXED]), control="control")
    ax = fig.axes[0]
    spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if isinstance(p, Rectangle)]
    assert spans == [(10.0, 30.0)]
    assert _bars(ax) == []
    assert any("closed: intervention window" in t.get_text() for t in ax.get_legend().get_texts())


def test_a_whole_run_intervention_is_not_a_window():
    study = _study([{"start": 0, "stop": None}])
    ax = curves_figure(_df(), ["control", "closed"], "train/loss", "t", study=study, control="control").axes[0]
    assert not ax.patches and _bars(ax) == []


def test_window_words_name_events_and_pulses():
    assert window_words([STOP_ON_EVENT]) == "sequences 0–[when train/loss < 0.5]"
    pulse = {"start": {"when": "train/loss", "op": "<", "threshold": 0.5, "duration": 2000}, "stop": None}
    # was: "sequences [train/loss < 0.5, for 2000 sequences]–end of training"
    assert window_words([pulse]) == "sequences [when train/loss < 0.5] for 2,000 sequences"
    late = {"start": {"when": "train/loss", "op": "<", "threshold": 0.5, "delay": 100, "duration": 2000}, "stop": 5000}
    assert window_words([late]) == ("sequences [when train/loss < 0.5, then 100 sequences] for 2,000 sequences "
                                    "or until 5,000, whichever is first")


def test_rule_words_tell_apart_rules_that_differ_only_in_their_reference():
    rules = [{"metric": "train/loss", "threshold": 0.277, "persist": 3000},
             {"metric": "train/loss", "threshold": 0.277, "persist": 3000, "relative_to": "ko:start"}]
    first, second = rule_words({"phase": rules}).split("; ")
    assert first != second and second.endswith("timed from ko:start") and "3,000" in first


def test_the_evaluation_grid_states_its_snap_to_batches():
    cfg = TrainConfig(n_sequences=2000, eval_every=500)
    assert cfg.evaluation_points() == [0, 512, 1024, 1504, 2016]
    words = grid_words({"arms": [{"name": "a", "train": cfg.to_dict()}]})
    assert "0, 512, 1,024, 1,504" in words and "ends at 2,016" in words
    even = grid_words({"arms": [{"name": "a", "train": TrainConfig(n_sequences=3200, eval_every=320).to_dict()}]})
    assert "batch boundary" not in even and "ends at" not in even
    two = grid_words({"arms": [{"name": "a", "train": cfg.to_dict()},
                               {"name": "b", "train": TrainConfig(n_sequences=2000, eval_every=512).to_dict()}]})
    assert two.startswith("`a`: ") and "; `b`: evaluations every 512 sequences: 0, 512" in two
