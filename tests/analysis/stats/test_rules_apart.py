"""Rules kept apart, `clamp stats --phase`, per-task default rules, and statistics failures that surface (issues 12, 20)."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from clamp.cli import main
from clamp.analysis.stats.pipeline import compute_statistics
from clamp.phase import PhaseRule

X = np.arange(0, 200_001, 2_000, dtype=float)


def _study(root: Path, *, phase: object, task: dict | None = None) -> Path:
    """3 seeds per arm; loss/second_repeat falls from 2.0 at a per-arm midpoint (control 120k, clamp 40k)."""
    rng = np.random.default_rng(0)
    study = {"name": root.name, "seeds": [0, 1, 2], "control": "control", "phase": phase,
             "arms": [{"name": a, "task": task or {}, "interventions": []} for a in ("control", "clamp")]}
    root.mkdir(parents=True)
    (root / "study.json").write_text(json.dumps(study))
    for arm, mid in (("control", 120_000), ("clamp", 40_000)):
        for seed in range(3):
            m = mid * (1 + 0.05 * seed)
            y = 0.05 + 1.95 / (1 + np.exp((X - m) / (m / 15))) + rng.normal(0, 0.01, X.size)
            d = root / "runs" / arm / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "run.json").write_text(json.dumps({"arm": arm, "seed": seed, "status": "finished"}))
            rows = {"sequences_seen": np.r_[X, X], "run": seed,
                    "metric": ["loss/second_repeat"] * X.size + ["train/loss"] * X.size,
                    "value": np.r_[y, 2.0 + y / 2]}  # the total loss keeps the random first repeat: floor ~2
            pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)
    return root


TWO_RULES = [{"metric": "loss/second_repeat", "threshold": 1.0, "direction": "below"},
             {"metric": "loss/second_repeat", "threshold": 0.277, "direction": "below"}]


def test_two_rules_on_one_metric_are_never_pooled(tmp_path: Path):
    root = _study(tmp_path / "two", phase=TWO_RULES)
    res = compute_statistics(root, quiet=True, n_boot=200)
    thr = res.stats[res.stats.estimator == "threshold"]
    assert len(thr) == 2 and list(thr.rule_index) == [0, 1]
    assert (thr.n_arm == 3).all() and (thr.n_reference == 3).all()  # 3 seeds per arm, not 6
    assert "3/3 runs crossed (control 3/3)" in res.markdown and "6/6" not in res.markdown
    assert "#### Primary rule: loss/second_repeat < 1" in res.markdown
    assert "#### Secondary rule: loss/second_repeat < 0.277" in res.markdown
    times = res.phase_times[res.phase_times.estimator == "threshold"]
    assert (times.groupby("rule_index").size() == 6).all()
    t1 = times[times.rule_index == 0].set_index(["arm", "seed"])["time"]
    t2 = times[times.rule_index == 1].set_index(["arm", "seed"])["time"]
    assert (t2 > t1).all()  # the lower threshold is crossed later: each rule has its own times
    plots = root / "plots"
    assert (plots / "stats_phase_times.png").is_file()
    assert (plots / "stats_phase_times__loss-second_repeat_lt_0.277.png").is_file()


def test_clamp_stats_phase_writes_its_own_folder_and_leaves_the_study_untouched(tmp_path: Path, capsys):
    root = _study(tmp_path / "cli", phase=TWO_RULES[0])
    assert main(["stats", str(root), "--n-boot", "200", "--quiet"]) == 0
    own = {p.name: p.read_bytes() for p in root.glob("*.csv")} | {"stats.md": (root / "stats.md").read_bytes()}
    assert main(["stats", str(root), "--n-boot", "200", "--quiet", "--phase", "loss/second_repeat<0.5",
                 "--persist", "end"]) == 0
    out = root / "stats_loss-second_repeat_lt_0.5_end"
    assert {p.name for p in out.iterdir()} >= {"phase_times.csv", "stats.csv", "stats.md", "plots"}
    md = (out / "stats.md").read_text()
    assert "falls below 0.5 (sequences seen) and stays below it to the end of the run" in md
    assert "recomputed under loss/second_repeat < 0.5, lasting to the end of the run" in md
    assert own == {p.name: p.read_bytes() for p in root.glob("*.csv")} | {"stats.md": (root / "stats.md").read_bytes()}
    stats_df = pd.read_csv(out / "stats.csv")
    assert set(stats_df.rule) == {"loss/second_repeat < 0.5, lasting to the end of the run"}
    # Python equivalent, and a rule that is not 'METRIC<THRESHOLD' is one clear error (exit 2).
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False, phase=["loss/second_repeat>1.5"])
    assert res.outputs[0].parent.name == "stats_loss-second_repeat_gt_1.5"
    assert main(["stats", str(root), "--phase", "loss/second_repeat=1"]) == 2
    assert "METRIC<THRESHOLD" in capsys.readouterr().err
    assert main(["stats", str(root), "--phase", "loss/second_repaet<1"]) == 2  # a typo names what was recorded
    err = capsys.readouterr().err
    assert "(did you mean 'loss/second_repeat'?)" in err and "recorded metrics are ['loss/second_repeat', 'train/loss']" in err
    assert not (root / "stats_loss-second_repaet_lt_1").exists()


def test_the_default_rule_on_the_repeat_task_is_a_warning_naming_the_tasks_rule(tmp_path: Path, capsys):
    root = _study(tmp_path / "rep", phase=PhaseRule().to_dict(), task={"kind": "repeat", "vocab": 64, "half": 10})
    res = compute_statistics(root, quiet=True, n_boot=200, plots=False)
    assert "0/3 runs crossed (control 0/3)" in res.markdown
    warn = [w for w in res.warnings if "'repeat' task" in w]
    assert warn and "--phase 'loss/second_repeat<2.08'" in warn[0]  # the task's rule: 0.5 ln 64
    assert "loss/second_repeat" in capsys.readouterr().err  # on the console too, even with quiet=True
    from clamp.tasks import FewShotConfig, RepeatConfig

    assert FewShotConfig().default_phase_rule() == PhaseRule()
    assert RepeatConfig().default_phase_rule().metric == "loss/second_repeat"


def test_an_import_error_inside_the_statistics_is_reported_not_skipped(tmp_path: Path, monkeypatch, capsys):
    from clamp.execution.runner import finish_study

    root = _study(tmp_path / "imp", phase=TWO_RULES[0])
    monkeypatch.setitem(sys.modules, "clamp.analysis.stats.pipeline", None)  # import raises ImportError
    assert finish_study(root, quiet=True) == 1
    err = capsys.readouterr().err
    assert "statistics failed" in err and "import of clamp.analysis.stats.pipeline halted" in err
    assert not (root / "stats.csv").exists()
