"""The formation-law fit on synthetic phase times whose exponent is known: recovered within its interval, with
censored cells handled (not dropped, not set to their budget), groups that change the constant or the exponent,
and the ``clamp law`` command on a hand-built results folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clamp.analysis.stats.law import fit_exponents, fit_law, law_words
from clamp.analysis.stats.law_study import law_report
from clamp.cli import main
from clamp.errors import ConfigError

GRID = [(b, c) for b in (8, 16, 32) for c in (32, 64, 128)]


def _runs(rng: np.random.Generator, exponent: float = 0.5, sigma: float = 0.2, seeds: int = 5,
          budget_tokens: float | None = None, factor: float = 1.0, d_exponent: float = 0.0):
    """Phase times N = 3000 · (B·C)^exponent · e^(σ ε) tokens per run; censored at ``budget_tokens`` when given."""
    t, e, x = [], [], []
    for b, c in GRID:
        for _ in range(seeds):
            n = factor * 3000 * (b * c) ** (exponent + d_exponent) * math.exp(sigma * rng.normal())
            if budget_tokens is not None and n > budget_tokens:
                t.append(budget_tokens)
                e.append(False)
            else:
                t.append(n)
                e.append(True)
            x.append(b * c)
    return np.array(t), np.array(e), np.array(x)


def test_a_known_exponent_is_recovered_within_its_interval_at_about_the_stated_rate():
    rng = np.random.default_rng(0)
    covered, estimates = 0, []
    for _ in range(200):
        t, e, x = _runs(rng)
        ex = fit_law(t, e, x).term("exponent")
        covered += ex.low <= 0.5 <= ex.high
        estimates.append(ex.estimate)
    assert abs(np.mean(estimates) - 0.5) < 0.01
    assert covered / 200 >= 0.9  # Wald intervals at 95 %, 45 runs


def test_censored_cells_are_handled_not_dropped_or_set_to_their_budget():
    rng = np.random.default_rng(1)
    t, e, x = _runs(rng, exponent=0.6, budget_tokens=3000 * 2048 ** 0.6)  # most of the largest cell, half the next
    assert 5 < (~e).sum() < 20
    fit = fit_law(t, e, x)
    ex = fit.term("exponent")
    assert ex.low <= 0.6 <= ex.high and fit.n_censored == (~e).sum()
    assert any("censored run(s) enter the likelihood" in n for n in fit.notes)
    # the two shortcuts the fit avoids are both biased low on this data
    dropped = fit_law(t[e], e[e], x[e]).term("exponent").estimate
    at_budget = fit_law(t, np.ones_like(e), x).term("exponent").estimate
    assert dropped < ex.estimate - 0.03 and at_budget < ex.estimate - 0.03
    # a cell entirely censored still enters; with crossings at one x only, no slope: a clear error
    with pytest.raises(ConfigError, match="a slope needs two"):
        fit_law([10.0, 20.0, 30.0], [True, True, False], [256, 256, 1024])


def test_a_group_that_only_shifts_the_constant_is_told_apart_from_one_that_changes_the_exponent():
    rng = np.random.default_rng(2)
    t0, e0, x0 = _runs(rng)
    t1, e1, x1 = _runs(rng, factor=0.5)  # half the tokens everywhere: the constant moves, the exponent does not
    groups = [None] * len(t0) + ["clamp"] * len(t1)
    fit = fit_law(np.r_[t0, t1], np.r_[e0, e1], np.r_[x0, x1], groups=groups)
    da, db = fit.term("d_log_constant:clamp"), fit.term("d_exponent:clamp")
    assert da.low <= math.log(0.5) <= da.high and da.high < 0 and db.low <= 0 <= db.high
    assert "changes the constant, not detectably the exponent" in law_words(fit)[2]
    t2, e2, x2 = _runs(rng, d_exponent=-0.3)
    fit = fit_law(np.r_[t0, t2], np.r_[e0, e2], np.r_[x0, x2], groups=groups)
    db = fit.term("d_exponent:clamp")
    assert db.low <= -0.3 <= db.high and db.high < 0


def test_batch_and_context_exponents_apart():
    rng = np.random.default_rng(3)
    B = np.repeat([8, 16, 32], 15)
    C = np.tile(np.repeat([32, 64, 128], 5), 3)
    t = 100 * B ** 0.3 * C ** 0.8 * np.exp(0.1 * rng.normal(size=B.size))
    (tb, tc), sigma = fit_exponents(t, np.ones(B.size, bool), {"B": B, "C": C})
    assert tb.low <= 0.3 <= tb.high and tc.low <= 0.8 <= tc.high and 0.05 < sigma < 0.2


def test_the_law_command_on_a_hand_built_folder(tmp_path: Path, capsys):
    rng = np.random.default_rng(4)
    arms, rows = [], []
    for b, c in GRID:
        name = f"b{b}_c{c}"
        arms.append({"name": name, "train": {"batch_size": b}, "model": {"n_ctx": c}, "task": {"n_ctx": c},
                     "interventions": []})
        for seed in range(3):
            tokens = 3000 * (b * c) ** 0.5 * math.exp(0.1 * rng.normal())
            rows.append({"arm": name, "seed": seed, "rule_index": 0, "estimator": "threshold", "time": tokens / c,
                         "event": True, "included": True})
    root = tmp_path / "law"
    root.mkdir()
    (root / "study.json").write_text(json.dumps({"name": "law", "arms": arms, "seeds": [0, 1, 2],
                                                 "phase": {"metric": "markov/bigram_progress", "threshold": 0.5,
                                                           "direction": "above"}}))
    pd.DataFrame(rows).to_csv(root / "phase_times.csv", index=False)
    assert main(["law", str(root)]) == 0
    out = capsys.readouterr().out
    assert "N ∝ (B·C)^0." in out and "the run-level interval includes Aoyama et al.'s 0.5" in out
    terms = pd.read_csv(root / "law.csv").set_index("term")
    assert terms.loc["exponent", "low"] <= 0.5 <= terms.loc["exponent", "high"]
    assert {"separate:B", "separate:C"} <= set(terms.index)
    cells = pd.read_csv(root / "law_cells.csv")
    assert len(cells) == 9 and (cells["crossed"] == 3).all()
    assert (root / "plots/law.png").is_file() and (root / "law.md").is_file()
    fit = law_report(root, quiet=True, n_boot=200)
    assert fit.method.startswith("log-normal AFT maximum likelihood; percentile bootstrap")
