"""Four studies a new user wrote from the README alone run and report without workarounds.

``tests/examples/studies/``: a user's nnsight intervention with a window that closes, a Hugging Face
GPT-2 with a ``ModuleEdit`` and no ``heatmap_heads``, a closed-loop pulse (``When(..., duration=...)``),
and a task defined in the study file with a metric returning a dict.  Each is run with ``clamp run``
as written, and what its report and page say is checked: the words that misled before, the
figures, the code fingerprints and the study file's hash.  With Chromium present the pages are also
opened in a real browser.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from clamp.analysis.browser import Browser, find_chromium
from clamp.cli import main
from helpers.page import page_problems

pytestmark = pytest.mark.slow

STUDIES = Path(__file__).parent / "studies"
NAMES = ("nnsight_closing_window", "gpt2_module_edit", "closed_loop_pulse", "custom_task_dict_metric")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    for name in NAMES:
        assert main(["run", str(STUDIES / f"{name}.py"), "--out", str(out), "--quiet"]) == 0, name
        assert (out / name / "index.html").is_file(), name
    return out


def _metrics(d: Path, arm: str, seed: int) -> pd.DataFrame:
    return pd.read_csv(d / "runs" / arm / f"seed{seed}" / "metrics.csv")


def _header(d: Path) -> str:
    return (d / "report.md").read_text().split("## Arms")[0]


def test_nnsight_intervention_with_a_closing_window(results, tmp_path, capsys):
    d = results / "nnsight_closing_window"
    fired = _metrics(d, "scaled", 0).query("metric == 'fired/scaled'")
    assert (fired.query("sequences_seen <= 256")["value"].iloc[1:] > 0).all()  # every interval inside the window
    assert (fired.query("sequences_seen > 288")["value"] == 0).all()  # and none after it closed
    report = (d / "report.md").read_text()
    assert "`scaled` (sequences 0–256)" in report
    assert "scale_values (study file)" in _header(d) and "sha256" in _header(d)
    # The constant the function reads is part of the run's identity: editing it refuses the finished runs.
    edited = tmp_path / "nnsight_closing_window.py"
    edited.write_text((STUDIES / "nnsight_closing_window.py").read_text().replace("SCALE = 0.3", "SCALE = 0.5"))
    capsys.readouterr()
    assert main(["run", str(edited), "--out", str(results), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "scale_values" in err and "changed" in err and "--replace" in err


def test_gpt2_with_a_module_edit_and_no_heatmap_heads(results):
    d = results / "gpt2_module_edit"
    assert {"attention_control.png", "attention_no_mlp0.png"} <= {p.name for p in (d / "plots").glob("*.png")}
    report = (d / "report.md").read_text()
    assert "gpt2_lm(" in report and "None" not in report.split("## Runs")[0].split("## Arms")[1]
    assert "no_mlp0 (module_edit; module=transformer.h.0.mlp" in (d / "index.html").read_text()


def test_closed_loop_pulse_is_described_as_a_pulse_and_drawn_per_run(results):
    d = results / "closed_loop_pulse"
    report = (d / "report.md").read_text()
    assert "`pulse` (sequences [when train/loss < 3] for 128 sequences)" in report
    assert "end of training" not in report.split("## Runs")[0]
    for seed in (0, 1):
        m = _metrics(d, "pulse", seed)
        assert m.query("metric == 'trigger/pulse/start' and value == 1").sequences_seen.min() == 0
        fired = m.query("metric == 'fired/pulse'")
        assert (fired.query("0 < sequences_seen <= 128")["value"] > 0).all()
        assert (fired.query("sequences_seen > 160")["value"] == 0).all()  # closed 128 sequences after it opened


def test_custom_task_with_a_dict_metric(results):
    d = results / "custom_task_dict_metric"
    m = _metrics(d, "control", 0)
    assert {"prev_token/best", "prev_token/mean", "train/acc"} <= set(m.metric)
    header = _header(d)
    assert "train/acc > 0.9, lasting 192 sequences; prev_token/best > 0.8, lasting 192 sequences" in header
    assert "AdjacentParity (study file)" in header and "prev_token (study file)" in header
    phase = pd.read_csv(d / "phase_times.csv")
    assert set(phase.rule) == {"train/acc > 0.9, lasting 192 sequences", "prev_token/best > 0.8, lasting 192 sequences"}


@pytest.mark.skipif(find_chromium() is None and not os.environ.get("CLAMP_REQUIRE_BROWSER"),
                    reason="no Chromium on this machine (apt-get install -y chromium)")
def test_every_page_opens_cleanly_in_a_browser(results, tmp_path):
    with Browser(width=1200, height=900) as b:
        for name in NAMES:
            d = results / name
            tables = ["arms-table", "runs-table", "phase-table"] + (["comparisons-table"] if name != "custom_task_dict_metric" else [])
            assert page_problems(b, d, tables) == [], name
            text = b.evaluate("document.body.innerText")
            assert "sha256" in text and "evaluations every 64 sequences" in text, name
            if name == "gpt2_module_edit":  # the page that crashed before: the foreign model in words, its heat maps
                assert "gpt2_lm(n_layer=2" in text and "NoneL" not in text
            if name == "nnsight_closing_window":
                assert "scale_values (study file)" in text
                p_cell = b.evaluate("document.querySelector('table.glance tbody tr').cells[4].textContent")
                assert p_cell.endswith("(Holm over the primary family of 1)"), p_cell
    # a page copied elsewhere still shows everything (no absolute paths)
    shutil.copytree(results / "gpt2_module_edit", tmp_path / "moved")
    with Browser(width=1200, height=900) as b:
        assert page_problems(b, tmp_path / "moved", ["arms-table", "runs-table", "phase-table"]) == []
