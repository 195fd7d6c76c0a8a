"""The notebook API: run a quickstart-like study from Python, read its results back as DataFrames equal to the CSVs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import clamp


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """The quickstart's design (control vs match clamp, one active layer-2 head), shrunk to seconds."""
    model = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=8)
    task = clamp.FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
    one_head = clamp.knockout_heads(layer=1, keep=[0])
    study = clamp.Study(
        name="nb", description="A notebook study.", seeds=[0, 1, 2], n_sequences=384, eval_every=64, eval_size=32,
        checkpoint_every=192, heatmap_heads=["L1H0"],
        arms=[clamp.Arm(name="control", model=model, task=task, lr=3e-3, batch_size=16, interventions=[one_head]),
              clamp.Arm(name="match_clamp", model=model, task=task, lr=3e-3, batch_size=16,
                        interventions=[one_head, clamp.match_clamp(layer=1, head=0)])])
    out = tmp_path_factory.mktemp("nb")
    assert clamp.run_study(study, out=out, jobs=1, quiet=True) == 0
    return out / "nb"


pytestmark = pytest.mark.slow


def test_phase_times_and_stats_are_the_csvs(results):
    res = clamp.open_results(results)
    pd.testing.assert_frame_equal(res.phase_times, pd.read_csv(results / "phase_times.csv"))
    pd.testing.assert_frame_equal(res.comparisons, pd.read_csv(results / "stats.csv"))
    pd.testing.assert_frame_equal(res.summary, pd.read_csv(results / "summary.csv"))
    assert len(res.phase_times) and len(res.comparisons)
    assert set(res.comparisons["arm"]) == {"match_clamp"} and set(res.comparisons["reference"]) == {"control"}
    assert res.factorial.empty  # not a factorial study
    assert res.study == json.loads((results / "study.json").read_text())
    assert res.arms == ["control", "match_clamp"] and "stats" in res.stats_text.lower()
    assert "nb" in repr(res)


def test_metrics_are_every_runs_file_tidy(results):
    res = clamp.open_results(results)
    m = res.metrics
    assert list(m.columns) == ["arm", "seed", "sequences_seen", "metric", "value"]
    for arm in ("control", "match_clamp"):
        for seed in (0, 1, 2):
            raw = pd.read_csv(results / "runs" / arm / f"seed{seed}" / "metrics.csv")
            mine = m[(m["arm"] == arm) & (m["seed"] == seed)].reset_index(drop=True)
            pd.testing.assert_frame_equal(mine[["sequences_seen", "metric", "value"]],
                                          raw[["sequences_seen", "metric", "value"]], check_dtype=False)
    # one metric as a notebook would plot it
    wide = m[m["metric"] == "train/loss"].pivot_table(index="sequences_seen", columns=["arm", "seed"], values="value")
    assert wide.shape == (384 // 64 + 1, 6)


def test_runs_frame_has_one_row_per_run(results):
    runs = clamp.open_results(results).runs
    assert len(runs) == 6 and set(runs["status"]) == {"finished"}
    assert runs.set_index(["arm", "seed"]).loc[("control", 1), "init_seed"] == 1
    assert runs["hash"].notna().all()


def test_read_metrics_filters(results):
    m = clamp.read_metrics(results, metrics=["train/loss"], arms=["control"])
    assert set(m["metric"]) == {"train/loss"} and set(m["arm"]) == {"control"} and set(m["seed"]) == {0, 1, 2}


def test_a_folder_that_is_not_a_study_is_a_clear_error(tmp_path):
    with pytest.raises(clamp.ConfigError, match="no study.json"):
        clamp.open_results(tmp_path)


def test_index_html_is_written_by_run(results):
    page = (results / "index.html").read_text()
    assert "<h1>Study <code>nb</code></h1>" in page and page.count("data:image/png;base64,") >= 5
