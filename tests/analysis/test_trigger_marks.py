"""The report marks on the curves where each run's trigger fired."""

from __future__ import annotations

import pandas as pd

from clamp.analysis.plots import curves_figure
from clamp.analysis.summary import window_words
from clamp.analysis.plots import trigger_times


def _df() -> pd.DataFrame:
    rows = []
    for arm in ("control", "closed"):
        for seed, fire in ((0, 20), (1, 30)):
            for x in (0, 10, 20, 30, 40):
                rows.append({"arm": arm, "seed": seed, "sequences_seen": x, "metric": "train/loss", "value": 0.7 - x / 100})
                if arm == "closed":
                    rows.append({"arm": arm, "seed": seed, "sequences_seen": x, "metric": "trigger/ko/stop",
                                 "value": float(x >= fire)})
    return pd.DataFrame(rows)


def test_trigger_times_and_vertical_markers():
    df = _df()
    assert trigger_times(df, "closed") == [("trigger/ko/stop", 0, 20.0), ("trigger/ko/stop", 1, 30.0)]
    assert trigger_times(df, "control") == []
    fig = curves_figure(df, ["control", "closed"], "train/loss", "t", control="control")
    ax = fig.axes[0]
    vertical = [l for l in ax.get_lines() if len(set(l.get_xdata())) == 1 and len(l.get_xdata()) == 2]
    assert sorted(float(l.get_xdata()[0]) for l in vertical) == [20.0, 30.0]
    assert any("ko/stop fired" in t.get_text() for t in ax.get_legend().get_texts())


def test_window_words_describes_triggers():
    w = {"start": 0, "stop": {"when": "train/loss", "op": "<", "threshold": 0.277}}
    assert window_words([w]) == "sequences 0–[train/loss < 0.277]"
