"""Factorial effects on log phase-change time with known answers."""

import math

import numpy as np
import pytest

from clamp.errors import ConfigError
from clamp.analysis.stats.factorial import additivity, design_matrix, factorial_effects


def cells(n: int = 5) -> list[dict[str, bool]]:
    return [{"A": a, "B": b} for a in (False, True) for b in (False, True) for _ in range(n)]


def simulate(levels, a=0.3, b=0.5, ab=1.0, sd=0.1, seed=0):
    rng = np.random.default_rng(seed)
    base = np.array([3e5 * (a if d["A"] else 1) * (b if d["B"] else 1) * (ab if d["A"] and d["B"] else 1)
                     for d in levels])
    return base * np.exp(rng.normal(0, sd, len(levels)))


def test_effect_coding():
    X = design_matrix(np.array([[False, False], [True, True]]), ["A", "B"], [("A",), ("B",), ("A", "B")])
    np.testing.assert_array_equal(X, [[1, -0.5, -0.5, 0.25], [1, 0.5, 0.5, 0.25]])


def test_noise_free_effects_are_recovered_exactly():
    lv = cells(2)
    eff = {e.term: e for e in factorial_effects(simulate(lv, sd=0.0) * np.tile([1.0, 1.1], 4), [True] * 8, lv)}
    assert eff["A"].ratio == pytest.approx(0.3)
    assert eff["B"].ratio == pytest.approx(0.5)
    assert eff["A:B"].ratio == pytest.approx(1.0)
    assert eff["A"].method.startswith("OLS")


def test_additive_effects_are_read_as_additive_and_cis_cover_the_truth():
    lv = cells()
    effects = factorial_effects(simulate(lv), [True] * 20, lv)
    eff = {e.term: e for e in effects}
    assert eff["A"].ratio_low <= 0.3 <= eff["A"].ratio_high and eff["A"].p < 0.001
    assert eff["B"].ratio_low <= 0.5 <= eff["B"].ratio_high
    assert eff["A:B"].ratio_low <= 1.0 <= eff["A:B"].ratio_high
    assert additivity(effects).startswith("No evidence of interaction")


def test_interaction_is_detected():
    lv = cells()
    effects = factorial_effects(simulate(lv, ab=4.0), [True] * 20, lv)
    eff = {e.term: e for e in effects}
    assert eff["A:B"].ratio == pytest.approx(4.0, rel=0.3) and eff["A:B"].ratio_low > 1
    assert additivity(effects).startswith("Effects are not additive")


def test_censored_runs_use_the_aft_model():
    lv = cells()
    t = simulate(lv, sd=0.3, seed=1)
    events = t < 3e5
    effects = factorial_effects(np.minimum(t, 3e5), events, lv)
    eff = {e.term: e for e in effects}
    assert (~events).sum() > 0
    assert eff["A"].method.startswith("log-normal AFT") and eff["A"].n_censored == int((~events).sum())
    assert eff["A"].ratio_low <= 0.3 <= eff["A"].ratio_high


def test_cell_without_crossings_gives_no_invented_effect():
    lv = cells(3)
    t = simulate(lv, sd=0.1)
    events = np.array([not (d["A"] is False and d["B"] is False) for d in lv])
    effects = factorial_effects(np.where(events, t, 4e5), events, lv)
    assert all(math.isnan(e.log_effect) for e in effects)
    assert "no crossings" in effects[0].note
    assert "untested" in additivity(effects)


def test_missing_cell_drops_the_interaction():
    lv = [d for d in cells(3) if not (d["A"] and d["B"])]
    effects = factorial_effects(simulate(lv), [True] * len(lv), lv)
    assert [e.term for e in effects] == ["A", "B"]
    assert "not estimable" in effects[0].note


def test_inconsistent_factors_are_a_config_error():
    with pytest.raises(ConfigError, match="same factors"):
        factorial_effects([1.0, 2.0], [True, True], [{"A": True}, {"B": True}])
