"""Robustness estimators that can disagree with the threshold rule (issue 20 item 1)."""

import math

import numpy as np
import pytest

from clamp.analysis.stats.phase import estimate_phase, fit_sigmoid
from clamp.phase import LN2, PhaseRule
from clamp.analysis.stats.sentences import robustness_sentence

X = np.arange(0, 400_001, 2_000, dtype=float)


def logistic(mid: float, scale: float, start: float = LN2, end: float = 0.02) -> np.ndarray:
    return end + (start - end) / (1 + np.exp((X - mid) / scale))


def test_sigmoid_midpoint_and_threshold_crossing_differ_by_the_known_amount():
    # The loss settles at 0.25, just under 0.4 ln 2 = 0.277: the threshold is crossed far into the tail,
    # mid + scale * ln((0.693 - 0.25) / (0.277 - 0.25) - 1) = 200,000 + 27,100 (next evaluation: 228,000).
    rng = np.random.default_rng(0)
    y = logistic(200_000, 10_000, end=0.25) + rng.normal(0, 0.002, X.size)
    est = estimate_phase(X, y, PhaseRule()).by_estimator()
    gap = 10_000 * math.log((LN2 - 0.25) / (0.4 * LN2 - 0.25) - 1)
    assert est["threshold"].time == pytest.approx(200_000 + gap, abs=4_000)
    assert est["sigmoid_mid"].time == pytest.approx(200_000, abs=1_500)
    assert est["sigmoid_onset"].time == pytest.approx(180_000, abs=3_000)
    assert est["steepest"].time == pytest.approx(200_000, abs=4_000)
    assert est["threshold"].time - est["sigmoid_mid"].time == pytest.approx(gap, abs=5_000)


def test_a_fit_is_not_seeded_by_the_crossing():
    # Two curves with the same midpoint but crossings 40,000 apart give the same midpoint.
    a = fit_sigmoid(X, logistic(150_000, 8_000, end=0.02), PhaseRule())
    b = fit_sigmoid(X, logistic(150_000, 8_000, end=0.26), PhaseRule())
    assert a.success and b.success
    assert a.midpoint == pytest.approx(150_000, abs=200) and b.midpoint == pytest.approx(150_000, abs=200)


def test_onset_before_the_first_evaluation_is_a_failure_not_a_clipped_time():
    # A drop already under way at the first evaluation (a clamp that removes the plateau).
    y = logistic(4_000, 3_000)
    est = estimate_phase(X, y, PhaseRule()).by_estimator()
    assert est["threshold"].event
    onset = est["sigmoid_onset"]
    assert math.isnan(onset.time) and not onset.event and "onset before the first evaluation" in onset.note


def test_failed_fits_say_why():
    flat = np.full(X.size, LN2)
    assert fit_sigmoid(X, flat, PhaseRule()).reason == "no drop: the curve is flat"
    slope = LN2 - X / X[-1] * 0.2  # falls, but never past the threshold
    assert fit_sigmoid(X, slope, PhaseRule()).reason.startswith("no drop")
    noise = np.random.default_rng(0).normal(0.3, 0.2, X.size)
    assert fit_sigmoid(X, noise, PhaseRule()).reason.startswith("bad fit: R²")


def test_robustness_sentence_uses_only_estimators_that_timed_both_arms_and_says_how_many_runs():
    nan = float("nan")
    rows = [dict(estimator="threshold", ratio=0.1, ratio_bound=nan, ratio_bound_kind="", n_arm=3, n_reference=3),
            dict(estimator="steepest", ratio=0.12, ratio_bound=nan, ratio_bound_kind="", n_arm=3, n_reference=2),
            dict(estimator="sigmoid_mid", ratio=nan, ratio_bound=nan, ratio_bound_kind="", n_arm=0, n_reference=3),
            dict(estimator="changepoint", ratio=nan, ratio_bound=0.05, ratio_bound_kind="at most", n_arm=3,
                 n_reference=3)]
    s = robustness_sentence("match", "control", rows, {"sigmoid_mid": "onset before the first evaluation in 3 runs"})
    assert s == ("match vs control under other estimators: steepest 8.3× sooner (3 vs 2 runs), changepoint at least "
                 "20× sooner (3 vs 3 runs); not usable: sigmoid_mid (onset before the first evaluation in 3 runs).")
    assert "n/a" not in s
