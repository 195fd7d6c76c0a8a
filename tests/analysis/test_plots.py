"""The report's plots and words (issue 20 item 5), on hand-built inputs with known answers.

The control stays visible when arms overlap; multi-arm panels wrap into a grid;
reference lines only where the task defines them; units on every axis; the
fired column counts over the intervention's windows; no warning reaches the console.
"""

from __future__ import annotations

import ast
import json
import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from clamp.analysis.plots import arm_styles, curves_figure, heads_figure, reference_lines
from clamp.analysis.report import build_report
from clamp.analysis.summary import fired_totals, intervention_words, window_words
from helpers.results import make_results
from helpers import ROOT

FEWSHOT = {"phase": {"metric": "train/loss", "threshold": 0.4 * math.log(2), "direction": "below"},
           "arms": [{"task": {"kind": "fewshot", "n_pairs": 2}}]}
REPEAT = {"phase": {"metric": "loss/second_repeat", "threshold": 1.0, "direction": "below"},
          "arms": [{"task": {"kind": "repeat"}}]}


def curves(arms: list[str], *, same: bool = True) -> pd.DataFrame:
    """Every arm with the identical curve (``same``): the worst case for overlap."""
    rows = []
    for k, arm in enumerate(arms):
        for seed in (0, 1):
            for seen in range(0, 500, 100):
                v = 0.7 - seen / 1000 if same else 0.7 - k * seen / 1000
                rows += [(arm, seed, seen, "train/loss", v), (arm, seed, seen, "induction/L1H0", seen / 500),
                         (arm, seed, seen, "induction/L1H1", 0.1)]
    return pd.DataFrame(rows, columns=["arm", "seed", "sequences_seen", "metric", "value"])


def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_reference_lines_only_where_the_task_defines_them():
    fs = reference_lines(FEWSHOT, "train/loss")
    assert [round(y, 4) for y, _, _ in fs] == [round(0.4 * math.log(2), 4), round(math.log(2), 4)]
    assert reference_lines(FEWSHOT, "train/acc") == []
    # repeated tokens: no ln 2 level; the study's own rule is drawn on its own metric only
    assert reference_lines(REPEAT, "train/loss") == []
    assert [label for _, _, label in reference_lines(REPEAT, "loss/second_repeat")] == ["phase rule: loss/second_repeat below 1"]
    three = {**FEWSHOT, "arms": [{"task": {"kind": "fewshot", "n_pairs": 3}}]}
    assert any(label == "ln 3 (chance from context)" and y == pytest.approx(math.log(3)) for y, _, label in reference_lines(three, "train/loss"))


def test_repeat_task_figure_has_no_ln2_line():
    fig = curves_figure(curves(["control", "a"]), ["control", "a"], "train/loss", "t", study=REPEAT, control="control")
    labels = [label for ax in fig.axes for label in _lines(ax)]
    assert not any("ln 2" in label or "0.4" in label for label in labels)


def test_control_is_drawn_in_every_panel_and_stays_distinguishable():
    arms = ["control", "a", "b", "c"]
    fig = curves_figure(curves(arms), arms, "train/loss", "t", study=FEWSHOT, control="control")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3  # small multiples: one per non-control arm
    for ax, arm in zip(panels, ["a", "b", "c"]):
        lines = _lines(ax)
        ctrl = next(v for k, v in lines.items() if k.split(" ")[0] == "control")
        other = next(v for k, v in lines.items() if k.split(" ")[0] == arm)
        assert ctrl.get_linestyle() != other.get_linestyle() and ctrl.get_color() != other.get_color()
        assert ctrl.get_zorder() > other.get_zorder()  # drawn on top when the curves coincide
        assert ax.get_xlabel() == "sequences seen" and ax.get_ylabel() == "loss (nats)"


def test_two_arms_share_one_panel_with_distinct_styles():
    fig = curves_figure(curves(["control", "a"]), ["control", "a"], "train/loss", "t", study=FEWSHOT, control="control")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
    styles = arm_styles(["control", "a"], "control")
    assert styles["control"]["ls"] == "-" and styles["a"]["ls"] != "-"


def test_colours_are_the_same_for_an_arm_in_every_figure():
    arms = ["control", "a", "b"]
    fig = curves_figure(curves(arms), arms, "train/loss", "t", study=FEWSHOT, control="control")
    colours = {}
    for ax in fig.axes:
        for label, line in _lines(ax).items():
            arm = label.split(" ")[0]
            colours.setdefault(arm, set()).add(line.get_color() if isinstance(line.get_color(), str) else tuple(line.get_color()))
    assert all(len(c) == 1 for a, c in colours.items() if a in arms)


def test_head_panels_wrap_into_a_grid():
    arms = [f"arm{i}" for i in range(9)]
    fig = heads_figure(curves(arms), arms, "induction")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 9
    rows = {round(ax.get_position().y0, 3) for ax in visible}
    cols = {round(ax.get_position().x0, 3) for ax in visible}
    assert len(rows) == 3 and len(cols) == 3  # 3 x 3, not 9 in a row
    assert all(ax.get_xlabel() == "sequences seen" and ax.get_ylabel() for ax in visible)


def test_fired_counts_over_the_window_not_the_last_interval():
    # a clamp whose window ended at 200 while evaluation went on to 400: it fired 3+5 times, then never again
    rows = [("a", s, seen, "fired/clamp", v) for s in (0, 1) for seen, v in ((0, 3.0), (100, 5.0), (200, 0.0), (300, 0.0), (400, 0.0))]
    df = pd.DataFrame(rows, columns=["arm", "seed", "sequences_seen", "metric", "value"])
    assert fired_totals(df, "a") == {"clamp": 8.0}
    assert window_words([{"start": 0, "stop": 200}]) == "sequences 0–200"
    words = intervention_words({"kind": "pattern_clamp", "name": "c", "windows": [{"start": 0, "stop": 200}], "layer": 1})
    assert words == "c (pattern_clamp; layer=1) during sequences 0–200"


def test_report_fired_column_says_what_it_counts(tmp_path):
    d = make_results(tmp_path)
    study = json.loads((d / "study.json").read_text())
    study["arms"][1]["interventions"] = [{"kind": "knockout", "name": "early", "windows": [{"start": 0, "stop": 150}]}]
    (d / "study.json").write_text(json.dumps(study))
    for seed in (0, 1):
        path = d / "runs" / "clamped" / f"seed{seed}" / "metrics.csv"
        path.write_text(path.read_text() + "".join(f"{seen},{seed},fired/early,{2.0 if seen <= 100 else 0.0}\n"
                                                   for seen in range(0, 401, 100)))
    text = build_report(d).read_text()
    assert "summed over every evaluation interval of its windows" in text
    assert "| `clamped` |" in text and "| early: 4 |" in text and "sequences 0–150" in text
    page = (d / "index.html").read_text()
    assert "early (knockout) during sequences 0–150; fired 4 times" in page


def test_building_the_report_leaks_no_warning(tmp_path):
    d = make_results(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_report(d)
    assert [str(w.message) for w in caught] == []


# --- one concept, one home (issue 13 item 4) ---------------------------------------------------

ANALYSIS = ROOT / "clamp" / "analysis"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_posthoc_modules_neither_import_their_package_nor_the_report():
    for path in (ANALYSIS / "posthoc").glob("*.py"):
        if path.name in ("__init__.py", "command.py"):  # the command (not the analyses) rebuilds the pages
            continue
        imports = _imports(path)
        assert "clamp.analysis.posthoc" not in imports, f"{path.name} imports its own package (an import cycle)"
        assert not any(i.startswith("clamp.analysis.report") for i in imports), f"{path.name} calls up into the report"


def test_one_figure_saver_and_one_metrics_reader():
    for path in [ANALYSIS / "report.py", *(ANALYSIS / "posthoc").glob("*.py")]:
        src = path.read_text()
        assert ".savefig(" not in src, f"{path.name} saves figures itself; use clamp.analysis.plots.save_figure"
        assert "metrics.csv\")" not in src and "read_csv(p)" not in src, f"{path.name} reads metrics.csv itself"


def test_only_the_control_is_solid_however_many_arms():
    arms = ["control"] + [f"a{i}" for i in range(9)]
    styles = arm_styles(arms, "control")
    assert [a for a, s in styles.items() if s["ls"] == "-"] == ["control"]
    assert [a for a, s in arm_styles(["x", "y"], None).items() if s["ls"] == "-"] == ["x"]
