"""End to end on small fake study folders written by hand (no runner, no training)."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clamp.cli import main
from clamp.errors import ConfigError
from clamp.analysis.stats import compute_statistics, read_study_spec

LN2 = math.log(2)
X = np.arange(0, 200_001, 2_000)


def loss_curve(mid: float | None, rng: np.random.Generator) -> np.ndarray:
    """Plateau at ln 2 then a drop at ``mid``; ``None`` never drops."""
    if mid is None:
        y = np.full(X.size, LN2)
    else:
        y = 0.02 + (LN2 - 0.02) / (1 + np.exp((X - mid) / (mid / 15)))
    return y + rng.normal(0, 0.01, X.size)


def write_study(root: Path, mids: dict[str, list[float | None]], *, control: str | None = "control",
                statuses: dict[tuple[str, int], str] | None = None, factors: dict[str, dict] | None = None,
                phase: object = None, comparisons: list | None = None) -> Path:
    rng = np.random.default_rng(0)
    seeds = list(range(len(next(iter(mids.values())))))
    study = {"name": root.name, "seeds": seeds, "control": control, "comparisons": comparisons or [],
             "phase": phase or {"metric": "train/loss", "threshold": 0.4 * LN2, "direction": "below"}, "alpha": 0.05,
             "arms": [{"name": a, "factors": (factors or {}).get(a, {}), "model": {}, "task": {},
                       "train": {"n_sequences": int(X[-1]), "batch_size": 32, "eval_every": 2000},
                       "interventions": []} for a in mids],
             "git_revision": "abc"}
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.json").write_text(json.dumps(study))
    for arm, arm_mids in mids.items():
        for seed, mid in zip(seeds, arm_mids):
            d = root / "runs" / arm / f"seed{seed}"
            d.mkdir(parents=True)
            status = (statuses or {}).get((arm, seed), "finished")
            (d / "run.json").write_text(json.dumps({"arm": arm, "seed": seed, "status": status}))
            loss = loss_curve(mid, rng)
            score = 1 - loss / LN2
            rows = [(x, seed, m, v) for x, l, s in zip(X, loss, score)
                    for m, v in (("train/loss", l), ("induction/L1H0", s), ("train/acc", 1 - l))]
            pd.DataFrame(rows, columns=["sequences_seen", "run", "metric", "value"]).to_csv(d / "metrics.csv", index=False)
    return root


@pytest.fixture
def headline_study(tmp_path: Path) -> Path:
    return write_study(tmp_path / "headline", {
        "control": [150_000, 160_000, None, 140_000, 170_000],
        "match clamp": [20_000, 22_000, 18_000, 21_000, 19_000],
        "copy clamp": [30_000, 32_000, 28_000, 31_000, 29_000],
    }, statuses={("copy clamp", 4): "diverged"})


@pytest.mark.slow
def test_compute_statistics_writes_every_output(headline_study: Path):
    res = compute_statistics(headline_study, quiet=True, n_boot=500)
    for name in ("phase_times.csv", "stats.csv", "stats.md", "plots/stats_phase_times.png",
                 "plots/stats_phase_times.svg", "plots/stats_km.png", "plots/stats_km.svg", "plots/stats_estimators.png"):
        assert (headline_study / name).is_file(), name
    assert not (headline_study / "factorial.csv").exists()
    phase = pd.read_csv(headline_study / "phase_times.csv")
    assert len(phase) == 15 * 5  # runs × estimators, one rule
    thr = phase[phase.estimator == "threshold"].set_index(["arm", "seed"])
    # The control run that never drops is censored at its last evaluation, not dropped.
    assert not thr.loc[("control", 2), "event"] and thr.loc[("control", 2), "time"] == X[-1]
    assert thr.loc[("control", 2), "included"]
    # The diverged run is listed with its status but excluded.
    assert thr.loc[("copy clamp", 4), "status"] == "diverged" and not thr.loc[("copy clamp", 4), "included"]
    stats_df = pd.read_csv(headline_study / "stats.csv")
    prim = stats_df[stats_df.headline].set_index("arm")
    assert set(prim.index) == {"match clamp", "copy clamp"}
    assert prim.loc["copy clamp", "n_arm"] == 4 and prim.loc["copy clamp", "n_excluded"] == 1
    assert prim.loc["match clamp", "test"].startswith("Gehan (exact")  # exact even with a censored control run
    assert prim.loc["match clamp", "censored_reference"] == 1
    assert prim.loc["match clamp", "ratio_high"] < 0.3
    np.testing.assert_allclose(prim["p_adjusted"].sort_values(),
                               np.minimum(1, np.maximum.accumulate(prim["p"].sort_values() * [2, 1])))
    assert len(res.sentences) == 2


def test_stats_md_has_one_sentence_per_comparison_and_the_warnings(headline_study: Path):
    md = compute_statistics(headline_study, quiet=True, n_boot=500, plots=False).markdown
    assert md == (headline_study / "stats.md").read_text()
    assert "- match clamp: phase change" in md and "× sooner than control (95 % CI" in md
    assert "5/5 runs crossed (control 4/5)" in md and "(Gehan (exact" in md
    assert "copy clamp/seed4 (diverged)" in md
    assert "right-censored" in md


def test_same_metrics_give_the_same_numbers(headline_study: Path):
    a = compute_statistics(headline_study, quiet=True, n_boot=300, plots=False).stats
    b = compute_statistics(headline_study, quiet=True, n_boot=300, plots=False).stats
    pd.testing.assert_frame_equal(a, b)


def test_three_seeds_warn_that_alpha_is_unreachable(tmp_path: Path):
    root = write_study(tmp_path / "small", {"control": [150_000, 160_000, 140_000], "match": [20_000, 22_000, 18_000]})
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    row = res.stats[res.stats.headline].iloc[0]
    assert row.min_p == pytest.approx(0.1) and not row.can_reach_alpha
    warn = [w for w in res.warnings if "cannot reach significance whatever the data" in w]
    assert warn and "too few runs for an exact test to go below alpha = 0.05: match vs control (3 vs 3: 0.1)" in warn[0]
    assert "2 more seeds for control (3 → 5) or 1 more seed for every arm (3 → 4)" in warn[0]
    assert "cannot reach significance: with 3 vs 3 runs the smallest p an exact test gives is 0.1" in res.sentences[0]
    # 3 vs 3: the interval says the level it reaches
    assert row.ratio_level == pytest.approx(0.9) and "90 % is the highest level an exact interval reaches" \
        in res.sentences[0]


def test_factorial_study_writes_factorial_csv(tmp_path: Path):
    base = np.array([150_000, 160_000, 140_000, 155_000])
    arms = {"none": base, "A": base * 0.4, "B": base * 0.5, "A+B": base * 0.2 * np.array([1.05, 0.95, 1, 1.02])}
    factors = {"none": {"A": False, "B": False}, "A": {"A": True, "B": False}, "B": {"A": False, "B": True},
               "A+B": {"A": True, "B": True}}
    root = write_study(tmp_path / "fact", {k: list(v) for k, v in arms.items()}, control="none", factors=factors)
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    fact = pd.read_csv(root / "factorial.csv").set_index("term")
    assert fact.loc["A", "ratio"] == pytest.approx(0.4, rel=0.1)
    assert fact.loc["B", "ratio"] == pytest.approx(0.5, rel=0.1)
    assert fact.loc["A:B", "ratio_low"] <= 1 <= fact.loc["A:B", "ratio_high"]
    assert "No evidence of interaction" in res.markdown


@pytest.mark.slow
def test_several_rules_and_extra_pairs(tmp_path: Path):
    rules = [{"metric": "train/loss", "threshold": 0.4 * LN2, "direction": "below"},
             {"metric": "induction/L1H0", "threshold": 0.5, "direction": "above"}]
    root = write_study(tmp_path / "rules", {"control": [150_000] * 3, "a": [20_000] * 3, "b": [40_000] * 3},
                       phase=rules, comparisons=[["a", "b"]])
    res = compute_statistics(root, quiet=True, n_boot=200)
    assert set(res.phase_times.metric) == {"train/loss", "induction/L1H0"}
    prim = res.stats[res.stats.headline]
    assert list(zip(prim.arm, prim.reference)) == [("a", "control"), ("b", "control"), ("a", "b")]
    assert set(res.stats.metric) == {"train/loss", "induction/L1H0"}
    assert (root / "plots" / "stats_phase_times__induction-L1H0_gt_0.5.png").is_file()
    assert "- a vs b: phase change" in res.markdown and "- a: phase change" in res.markdown


@pytest.mark.slow
def test_cli_recomputes_from_stored_metrics(headline_study: Path, capsys):
    assert main(["stats", str(headline_study), "--n-boot", "200", "--correction", "bonferroni", "--alpha", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "Bonferroni" in out and "90 % CI" in out
    assert (headline_study / "stats.csv").is_file()


def test_bad_study_files_name_the_fix(tmp_path: Path):
    assert main(["stats", str(tmp_path)]) == 2
    (tmp_path / "study.json").write_text(json.dumps({"arms": [{"name": "a"}], "control": "ctrl"}))
    with pytest.raises(ConfigError, match="'control'='ctrl' is not an arm"):
        read_study_spec(tmp_path)


def test_missing_and_running_runs_are_listed_not_compared(tmp_path: Path):
    root = write_study(tmp_path / "partial", {"control": [150_000, 160_000], "a": [20_000, 21_000]},
                       statuses={("a", 1): "running"})
    study = json.loads((root / "study.json").read_text())
    study["seeds"] = [0, 1, 2]
    (root / "study.json").write_text(json.dumps(study))
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    thr = res.phase_times[res.phase_times.estimator == "threshold"].set_index(["arm", "seed"])
    assert thr.loc[("a", 2), "status"] == "missing" and not thr.loc[("a", 2), "included"]
    assert thr.loc[("a", 1), "status"] == "running" and not thr.loc[("a", 1), "included"]
    assert res.stats[res.stats.headline].iloc[0].n_arm == 1


def test_one_seed_per_arm_gives_nan_rows_not_an_error(tmp_path: Path):
    # A smoke run (--set seeds=0): both control and copy never cross, a tie that scipy's permutation test refuses.
    root = write_study(tmp_path / "smoke", {"control": [None], "match": [20_000], "copy": [None]})
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    stats_df = pd.read_csv(root / "stats.csv")
    assert len(stats_df) == 2 * 5  # every comparison × estimator still has its row
    assert stats_df[["ratio", "median_arm", "p", "p_adjusted", "p_rank", "p_logrank", "paired_p"]].isna().all().all()
    assert (stats_df["n_arm"] == 1).all() and (stats_df["family_size"] == 0).all() and not stats_df["significant"].any()
    assert stats_df["note"].str.startswith("not compared: needs at least 2 runs per arm").all()
    assert "- match: not compared with control: a comparison needs at least 2 runs per arm (has 1 vs 1" in res.markdown
    assert any(w.startswith("Not compared: copy vs control (1 vs 1 runs") and "the study has 1 seed(s) for copy: add seeds"
               in w for w in res.warnings)


def test_one_run_arm_is_left_out_of_the_correction_family(tmp_path: Path):
    root = write_study(tmp_path / "mixed", {"control": [150_000, 160_000, 140_000], "match": [20_000, 22_000, 18_000],
                                            "copy": [30_000, 31_000, 29_000]}, statuses={("copy", 1): "running",
                                                                                          ("copy", 2): "diverged"})
    prim = compute_statistics(root, quiet=True, n_boot=200, plots=False).stats.query("headline").set_index("arm")
    assert prim.loc["match", "family_size"] == 1 and prim.loc["match", "p_adjusted"] == pytest.approx(0.1)
    assert prim.loc["copy", "family_size"] == 0 and math.isnan(prim.loc["copy", "p_adjusted"])


def test_factorial_with_one_seed_per_arm_gives_nan_effects(tmp_path: Path):
    factors = {"none": {"A": False}, "A": {"A": True}}
    root = write_study(tmp_path / "fact1", {"none": [150_000], "A": [60_000]}, control="none", factors=factors)
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    fact = pd.read_csv(root / "factorial.csv")
    assert fact["term"].tolist() == ["A"] and fact["ratio"].isna().all() and fact["p"].isna().all()
    assert fact["note"].iloc[0].startswith("too few runs (2) to fit")
    assert "- A: not estimable" in res.markdown and "Note: too few runs (2) to fit" in res.markdown
