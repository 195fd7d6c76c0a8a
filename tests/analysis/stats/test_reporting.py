"""Statistics a reader can trust at a glance: one family per comparison, floors that name their cause, intervals
that never print 0.00 or an unexplained NaN, shape estimators that neither depend on how long a run went on nor
drop an arm's fastest run silently, and docs/statistics.md's figures as the code produces them."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clamp.analysis.stats.families import reachable, seeds_advice
from clamp.analysis.stats.phase import estimate_phase
from clamp.analysis.stats.pipeline import compare_arms, compute_statistics
from clamp.analysis.stats.runs import StudySpec
from clamp.analysis.stats.sentences import robustness_sentence
from clamp.phase import PhaseRule
from helpers import ROOT

STEP = 2_000


def _write(root: Path, study: dict, drops: dict[str, list[float | None]], end: float = 200_000) -> Path:
    """A hand-made results folder: per arm, one run per entry, the loss dropping at that time (None: never)."""
    root.mkdir(parents=True)
    study = {"seeds": list(range(len(next(iter(drops.values()))))), "eval_every": STEP, "n_sequences": int(end),
             "arms": [{"name": a} for a in drops], **study}
    (root / "study.json").write_text(json.dumps(study))
    x = np.arange(0, end + 1, STEP, dtype=float)
    for arm, times in drops.items():
        for seed, t in enumerate(times):
            d = root / "runs" / arm / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "run.json").write_text(json.dumps({"arm": arm, "seed": seed, "status": "finished"}))
            y = np.full(x.size, 0.70) if t is None else 0.05 + 0.65 / (1 + np.exp((x - t) / (t / 15)))
            pd.DataFrame({"sequences_seen": x, "run": seed, "metric": "train/loss", "value": y}).to_csv(
                d / "metrics.csv", index=False)
    return root


def test_a_scan_comparison_has_one_p_and_one_family_everywhere(tmp_path):
    # Before: scan arms were corrected once with the control comparisons (stats.csv, the sentences) and once
    # within the scan (scan_ko.csv, its section): "adjusted p = 0.056" and "adjusted p = 0.0317 (significant)".
    control = [100_000, 104_000, 96_000, 102_000, 98_000]
    drops = {"control": control, "other": [40_000, 42_000, 38_000, 41_000, 39_000],
             **{f"ko__L0H{h}": [t * (3 if h == 0 else 1) for t in control] for h in range(4)}}
    root = _write(tmp_path / "scan", {"name": "scan", "control": "control"}, drops, end=400_000)
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    head = res.stats[res.stats.headline].set_index("arm")
    assert head.loc["other", "family"] == "primary" and head.loc["other", "family_size"] == 1
    assert (head.loc[[f"ko__L0H{h}" for h in range(4)], "family"] == "scan ko").all()
    assert (head.loc[[f"ko__L0H{h}" for h in range(4)], "family_size"] == 4).all()
    ranked = pd.read_csv(root / "scan_ko.csv").set_index("arm")
    for arm in ranked.index:
        assert ranked.loc[arm, "p_adjusted"] == pytest.approx(head.loc[arm, "p_adjusted"])
        assert ranked.loc[arm, "family"] == "scan ko"
    # the scan's components appear in their own section only, with the family's p
    md = res.markdown
    assert not any(s.startswith("ko__") for s in res.sentences)
    p = head.loc["ko__L0H0", "p_adjusted"]
    assert f"adjusted p = {p:.3g}" in md.split("## Scans")[1] and "Holm over the scan ko family of 4" in md
    # --correction bh reaches the scan too (before: the scan ignored it)
    bh = compute_statistics(root, quiet=True, n_boot=200, plots=False, correction="bh", out=tmp_path / "bh")
    assert set(bh.stats["correction"]) == {"bh"} and "Benjamini–Hochberg over the scan ko family of 4" in bh.markdown


def test_the_floor_sentence_of_a_nine_comparison_family_names_the_family(tmp_path):
    # Nine arms against one control, 5 runs each, every clamped run before every control run: each p is the
    # exact floor 2/252, and Holm over 9 makes the smallest adjusted p 9 x 0.0079 = 0.071 > 0.05.
    control = [300_000, 310_000, 290_000, 305_000, 295_000]
    drops = {"control": control, **{f"a{i}": [t / (2 + i / 10) for t in control] for i in range(9)}}
    root = _write(tmp_path / "nine", {"name": "nine", "control": "control"}, drops, end=600_000)
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    head = res.stats[res.stats.headline]
    assert (head["family_size"] == 9).all() and np.allclose(head["reachable_p"], 9 * 2 / 252)
    assert "cannot reach significance: its smallest adjusted p is 0.071 (Holm over a family of 9, each p at least " \
           "0.0079)" in res.sentences[0]
    assert "smallest possible p 0.0079" not in res.markdown  # the floor below alpha is not the reason
    warn = next(w for w in res.warnings if w.startswith("In the primary family"))
    assert "Holm over the primary family of 9 makes the smallest adjusted p 0.071" in warn
    assert "1 more seed for control (5 → 6) would let every comparison reach alpha" in warn
    # and it is true: with a sixth control run the same comparisons can reach alpha
    assert (reachable([2 / math.comb(11, 5)] * 9, "holm") <= 0.05).all()
    # the study can declare a smaller primary family: the rest become secondary, corrected apart
    study = json.loads((root / "study.json").read_text())
    study["primary_comparisons"] = [[f"a{i}", "control"] for i in range(5)]
    (root / "study.json").write_text(json.dumps(study))
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    fam = res.stats[res.stats.headline].groupby("family")["family_size"].first().to_dict()
    assert fam == {"primary": 5, "secondary": 4}
    assert (res.stats[res.stats.headline]["significant"]).all()  # 5 x 0.0079 and 4 x 0.0079 are below 0.05


def test_seed_advice_is_computed_for_the_actual_design():
    assert seeds_advice([(5, 5)] * 9, "holm", 0.05, reference="control") == \
        "1 more seed for control (5 → 6) would let every comparison reach alpha"
    assert seeds_advice([(5, 5)] * 5, "holm", 0.05, reference="control") == ""  # 5 x 0.0079 = 0.040 already
    assert seeds_advice([(2, 5)], "none", 0.05, reference="control").startswith("1 more seed for every arm")


def test_no_interval_prints_zero_or_an_unexplained_nan(tmp_path):
    # Patterns that gave "0.00", "2.4-inf x" or a NaN interval with the percentile bootstrap (review item 6).
    drops = {"control": [150_000, None, 160_000, 170_000, 155_000], "one": [40_000, 42_000, 38_000, 41_000, 39_000],
             "never": [None] * 5, "mixed": [30_000, None, 35_000, None, 33_000]}
    root = _write(tmp_path / "cens", {"name": "cens", "control": "control",
                                      "comparisons": [["never", "one"], ["mixed", "never"]]}, drops)
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    for text in (res.markdown, (root / "stats.md").read_text()):
        assert not re.search(r"\b0\.00\b|\bnan\b|NaN", text), text
    rows = res.stats[res.stats.estimator == "threshold"]
    for r in rows.itertuples():
        if not (math.isfinite(r.ratio_low) and math.isfinite(r.ratio_high)) or r.ratio_low == 0 or math.isnan(r.ratio):
            assert r.ratio_note, (r.arm, r.reference)
    one = rows[(rows.arm == "one") & (rows.reference == "control")].iloc[0]
    assert 0 < one.ratio_low < one.ratio < one.ratio_high < 1 and one.ratio_level == 0.95
    never = rows[(rows.arm == "never") & (rows.reference == "one")].iloc[0]
    assert math.isnan(never.ratio) and never.ratio_bound_kind == "at least" and math.isinf(never.ratio_high)
    assert "at least" in next(s for s in res.sentences if s.startswith("never vs one")) and "unbounded" in \
        next(s for s in res.sentences if s.startswith("never vs one"))


def test_an_estimator_that_loses_an_arms_fastest_run_is_not_used_for_that_comparison():
    rows = []
    for arm, times in (("control", [100_000, 110_000, 120_000]), ("fast", [20_000, 30_000, 40_000])):
        for seed, t in enumerate(times):
            for est, v, note in (("threshold", t, ""), ("sigmoid_mid", t * 1.02, ""), ("steepest", t * 0.98, "")):
                if est == "sigmoid_mid" and arm == "fast" and seed == 0:
                    v, note = math.nan, "onset before the first evaluation (midpoint at -1.2e+05)"
                rows.append({"arm": arm, "seed": seed, "rule_index": 0, "estimator": est, "time": v, "event": True,
                             "included": math.isfinite(v), "relapsed": False, "status": "finished", "note": note})
    table = pd.DataFrame(rows)
    spec = StudySpec.from_dict({"name": "e", "seeds": [0, 1, 2], "control": "control",
                                "arms": [{"name": "control"}, {"name": "fast"}]})
    stats_df = compare_arms(table, spec, n_boot=200, estimators=("threshold", "sigmoid_mid", "steepest"))
    sig = stats_df[stats_df.estimator == "sigmoid_mid"].iloc[0]
    assert not sig.usable and sig.lost_runs == "fast/seed0 (threshold 20,000, onset before the first evaluation " \
                                                "(midpoint at -1.2e+05))"
    assert sig.lost_summary == "cannot time 1 of 3 fast runs, its fastest (seed0, 20,000) among them"
    assert math.isnan(sig.p_adjusted) and sig.family_size == 0  # out of the estimator's family
    text = robustness_sentence("fast", "control", stats_df.to_dict("records"))
    assert "steepest" in text.split("not usable")[0] and "sigmoid_mid" in text.split("not usable")[1]


def test_shape_estimators_do_not_depend_on_how_long_the_run_went_on():
    # The same curve, stopped 50k + 25 % after its phase change, or trained to 600k: the same times.  Before, the
    # smoothing window was 3 % of each run's range and the sigmoid was fitted to the run's end.
    rng = np.random.default_rng(0)
    for drop in (20_000, 100_000):
        x = np.arange(0, 600_001, 1_000, dtype=float)
        y = (0.69 + 0.9 * np.exp(-x / 3_000) - 0.64 / (1 + np.exp(-(x - drop) / (drop / 15)))
             + rng.normal(0, 0.005, x.size))
        stop = drop + 50_000 + drop // 4
        window = 0.03 * 600_000  # the study's, from its shortest budget
        full = estimate_phase(x, y, PhaseRule(persist=3_000), window=window).by_estimator()
        cut = estimate_phase(x[x <= stop], y[x <= stop], PhaseRule(persist=3_000), window=window).by_estimator()
        for est in ("threshold", "steepest", "sigmoid_mid", "changepoint"):
            assert full[est].event and math.isfinite(full[est].time), (drop, est, full[est].note)
            assert cut[est].time == pytest.approx(full[est].time, rel=0.03), (drop, est)


def _docs_table() -> list[list[str]]:
    text = (ROOT / "docs/statistics.md").read_text()
    block = text.split("<!-- clamp bench --stats: begin -->")[1].split("<!-- clamp bench --stats: end -->")[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()
            if line.startswith("| ") and not line.startswith("| design")]


def test_the_docs_table_is_the_suites_csv():
    rows = list(csv.DictReader(open(ROOT / "docs/data/stats_suite.csv")))
    table = _docs_table()
    assert len(table) == len(rows) == 36
    for cells, row in zip(table, rows):
        assert cells[0] == row["design"] and cells[1] == row["n_per_arm"]
        assert cells[2].startswith(f"{float(row['size']):.3f}")
        assert cells[3] == f"{float(row['power_2x']):.3f} {float(row['power_3x']):.3f}"
        assert cells[4].startswith(f"{float(row['ci_level']) * 100:.4g} %: {float(row['coverage_null']):.3f} / "
                                   f"{float(row['coverage_3x']):.3f}")


@pytest.mark.slow
def test_the_docs_figures_are_what_the_code_produces_now():
    """One cell of the suite rerun in full (same seed, same 2,000 studies): the committed CSV must match exactly."""
    from clamp.bench.stats_suite import DESIGNS, run_suite

    row = next(r for r in csv.DictReader(open(ROOT / "docs/data/stats_suite.csv"))
               if r["design"] == "per-arm budgets" and r["n_per_arm"] == "5")
    sims = int(row["sims"])
    fresh = run_suite(designs=[d for d in DESIGNS if d.name == "per-arm budgets"], ns=(5,), sims=sims, quiet=True)[0]
    for key in ("size", "power_2x", "power_3x", "coverage_null", "coverage_3x", "ci_level", "stop_mismatches"):
        assert float(fresh[key]) == pytest.approx(float(row[key]), abs=1e-12), key
