"""Phase-change estimators on hand-built curves with known answers."""

import math

import numpy as np
import pytest

from clamp.errors import ConfigError
from clamp.analysis.stats.phase import (ESTIMATORS, change_point_time, estimate_phase, fit_sigmoid, plateau, steepest_descent_time, threshold_time)
from clamp.phase import PhaseRule, clean_curve

LN2 = math.log(2)
X = np.arange(0, 400_001, 2_000, dtype=float)  # 201 evaluations


def sigmoid_loss(mid: float, scale: float, x: np.ndarray = X, start: float = LN2, end: float = 0.02) -> np.ndarray:
    return end + (start - end) / (1 + np.exp((x - mid) / scale))


def with_transient(y: np.ndarray, x: np.ndarray = X) -> np.ndarray:
    """The quick early drop from ln 5 to the ln 2 plateau seen at the start of training."""
    return y + (math.log(5) - LN2) * np.exp(-x / 3_000)


def test_step_at_known_position():
    y = np.where(X < 120_000, LN2, 0.05)
    est = estimate_phase(X, y, PhaseRule()).by_estimator()
    assert est["threshold"].time == 120_000 and est["threshold"].event
    assert est["changepoint"].time == 120_000
    assert abs(est["steepest"].time - 119_000) <= 2_000  # between the last plateau and the first low evaluation
    assert abs(est["sigmoid_mid"].time - 119_000) <= 2_000


def test_sigmoid_with_known_midpoint_and_width():
    y = sigmoid_loss(mid=200_000, scale=5_000)
    fit = fit_sigmoid(X, y, PhaseRule())
    assert fit.success and fit.r2 > 0.9999
    assert fit.midpoint == pytest.approx(200_000, rel=1e-3)
    assert fit.width == pytest.approx(2 * math.log(9) * 5_000, rel=1e-2)
    assert fit.onset == pytest.approx(190_000, rel=1e-2)
    est = estimate_phase(X, y, PhaseRule()).by_estimator()
    assert abs(est["steepest"].time - 200_000) <= 2_000
    assert abs(est["changepoint"].time - 200_000) <= 4_000
    # The threshold rule fires where the curve first dips below 0.4 ln 2, after the midpoint.
    expected = X[np.argmax(y < 0.4 * LN2)]
    assert est["threshold"].time == expected and 200_000 < expected < 210_000


def test_never_crossing_is_censored_at_last_evaluation_for_every_estimator():
    y = with_transient(np.full_like(X, LN2))
    est = estimate_phase(X, y, PhaseRule())
    assert [t.estimator for t in est.times] == list(ESTIMATORS)
    for t in est.times:
        assert t.event is False and t.time == 400_000
    assert est.plateau.ongoing and est.plateau.level == pytest.approx(LN2, abs=0.01)


def test_noisy_curves_stay_close_to_the_truth():
    rng = np.random.default_rng(0)
    for mid in (40_000, 150_000, 300_000):
        y = with_transient(sigmoid_loss(mid, mid / 15)) + rng.normal(0, 0.02, X.size)
        est = estimate_phase(X, y, PhaseRule()).by_estimator()
        for name in ("steepest", "sigmoid_mid", "changepoint"):
            assert est[name].event
            assert est[name].time == pytest.approx(mid, rel=0.12), name
        assert est["threshold"].time == pytest.approx(mid, rel=0.2)


def test_rising_score_uses_direction_above():
    score = 1 / (1 + np.exp(-(X - 100_000) / 4_000))  # induction strength rising from 0 to 1
    rule = PhaseRule(metric="induction/L1H0", threshold=0.5, direction="above")
    est = estimate_phase(X, score, rule).by_estimator()
    assert est["threshold"].time == 102_000  # first evaluation strictly above 0.5
    assert abs(est["steepest"].time - 100_000) <= 2_000
    assert est["sigmoid_mid"].time == pytest.approx(100_000, rel=1e-3)
    assert not threshold_time(X, score, PhaseRule(metric="m", threshold=1.5, direction="above")).event


def test_plateau_level_and_duration():
    y = with_transient(sigmoid_loss(mid=250_000, scale=5_000))
    p = plateau(X, y, PhaseRule())
    assert p.level == pytest.approx(LN2, abs=0.01)
    assert not p.ongoing
    assert p.start < 30_000 and 200_000 < p.end < 250_000
    assert p.duration == pytest.approx(p.end - p.start)


def test_no_plateau_when_the_loss_falls_steadily():
    y = LN2 * np.exp(-X / 30_000)
    p = plateau(X, y, PhaseRule())
    crossing = threshold_time(X, y, PhaseRule()).time
    assert p.duration < 0.2 * crossing


def test_estimators_do_not_mutate_and_handle_unsorted_nan_input():
    x = np.array([30.0, 0.0, 10.0, 20.0, 40.0])
    y = np.array([0.1, 0.7, np.nan, 0.7, 0.1])
    x0, y0 = x.copy(), y.copy()
    assert threshold_time(x, y, PhaseRule()).time == 30.0
    assert change_point_time(x, y, PhaseRule()).time == 30.0
    steepest_descent_time(x, y, PhaseRule())
    estimate_phase(x, y, PhaseRule())
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    cx, cy = clean_curve(x, y)
    assert cx.tolist() == [0.0, 20.0, 30.0, 40.0]


def test_empty_curve_gives_no_time():
    t = threshold_time([], [], PhaseRule())
    assert math.isnan(t.time) and not t.event


def test_rule_validation_names_the_field():
    with pytest.raises(ConfigError, match="direction"):
        PhaseRule(direction="down")
    with pytest.raises(ConfigError, match="unknown keys"):
        PhaseRule.from_dict({"metric": "train/loss", "treshold": 0.2})
    assert PhaseRule.from_dict(PhaseRule().to_dict()) == PhaseRule()
