"""Comparisons on simulated phase-time samples: known shifts, null studies, censoring."""

import math

import numpy as np
import pytest
from scipy import stats

from clamp.errors import ConfigError
from clamp.analysis.stats.compare import (
    bootstrap_rmst, compare_samples, logrank_test, min_paired_p, paired_analysis, rmst_horizon,
)
from clamp.analysis.stats.rank import gehan_scores, gehan_test, min_rank_p, primary_test, time_ratio
from clamp.corrections import adjust_pvalues
from clamp.analysis.stats.survival import km_curve, km_median, rmst

ALL = [True] * 5


def test_km_median_equals_sample_median_without_censoring():
    rng = np.random.default_rng(0)
    for n in (4, 5):
        t = rng.uniform(1, 10, n)
        assert km_median(t, [True] * n) == pytest.approx(np.median(t))


def test_km_median_with_censoring_and_not_reached():
    # S drops to 3/4 at 1, 2/4 at 2 (median = midpoint to the next crossing at 4), censored at 3.
    assert km_median([1, 2, 3, 4], [True, True, False, True]) == 3.0
    assert km_median([1, 9, 9, 9], [True, False, False, False]) == math.inf
    t, s = km_curve([1, 9], [True, False])
    assert t.tolist() == [1.0, 9.0] and s.tolist() == [0.5, 0.5]


def test_rmst_is_the_mean_of_truncated_times():
    assert rmst([2, 4, 6], [True] * 3, tau=5) == pytest.approx(np.mean([2, 4, 5]))
    assert rmst([2, 4, 6], [True, False, True], tau=6) == pytest.approx(2 * 1 + 4 * (2 / 3))
    assert rmst_horizon([1, 2], [True, True], [3, 9], [True, False]) == 9.0


def test_design_floors():
    assert min_rank_p(5, 5) == pytest.approx(2 / 252)
    assert min_rank_p(3, 3) == pytest.approx(0.1)
    assert min_paired_p(5) == 0.0625
    # The floor is what the exact test gives for complete separation.
    p, how = gehan_test(np.arange(5) + 1, ALL, np.arange(5) + 10, ALL)
    assert p == pytest.approx(min_rank_p(5, 5)) and how == "exact"


def test_holm_matches_hand_computed_values():
    adj = adjust_pvalues([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_pvalues([0.01, 0.04], "bonferroni"), [0.02, 0.08])
    np.testing.assert_allclose(adjust_pvalues([0.3, np.nan, 0.6]), [0.6, np.nan, 0.6])
    # Benjamini-Hochberg: p_(i) * m / i, running minimum from the top
    np.testing.assert_allclose(adjust_pvalues([0.01, 0.02, 0.03, 0.5], "bh"), [0.04, 0.04, 0.04, 0.5])
    assert np.isnan(adjust_pvalues([np.nan, 0.01], "bh")[0])
    with pytest.raises(ConfigError, match="correction"):
        adjust_pvalues([0.1], "sidak")


def test_known_shift_is_detected_and_ci_covers_truth():
    rng = np.random.default_rng(3)
    control = rng.lognormal(math.log(3e5), 0.3, 5)
    arm = rng.lognormal(math.log(3e4), 0.15, 5)
    c = compare_samples(arm, ALL, control, ALL, arm="match", reference="control",
                        pairs=[(i, i) for i in range(5)], n_boot=2000)
    assert c.ratio_low <= 0.1 <= c.ratio_high and c.ratio_low < c.ratio < c.ratio_high and c.ratio_level == 0.95
    # the Hodges-Lehmann ratio: the median of the 25 pairwise ratios
    assert c.ratio == pytest.approx(math.exp(np.median(np.log(arm)[:, None] - np.log(control)[None, :])))
    assert c.median_ratio == pytest.approx(np.median(arm) / np.median(control))
    assert c.difference == pytest.approx(np.median(arm) - np.median(control))
    assert c.test == "Gehan (exact)" and c.p == pytest.approx(2 / 252)
    assert c.paired_test == "wilcoxon exact" and c.paired_p == pytest.approx(0.0625)
    assert c.rmst_difference < 0 and c.rmst_high < 0


def test_bootstrap_is_reproducible():
    a, b = [1.0, 2, 3, 5, 8], [10.0, 12, 15, 11, 30]
    assert bootstrap_rmst(a, ALL, b, ALL, tau=30, n_boot=500, seed=7) == bootstrap_rmst(a, ALL, b, ALL, tau=30,
                                                                                        n_boot=500, seed=7)


def test_censored_samples_use_km_logrank_and_never_invent_a_median():
    arm = [3e4, 3.2e4, 2.9e4, 3.5e4, 3.1e4]
    control = [2.5e5, 4e5, 4e5, 3.8e5, 4e5]
    control_events = [True, False, False, True, False]
    c = compare_samples(arm, ALL, control, control_events, arm="copy", reference="control", n_boot=500)
    assert c.median_reference == math.inf and math.isnan(c.median_ratio)
    # two controls crossed: a ratio balances the arms; three never did, so no ratio however small is excluded:
    # the interval's sooner side is unbounded, and says so
    assert 0 == c.ratio_low < c.ratio < c.ratio_high < 1 and "lower side unbounded" in c.ratio_note
    assert c.test.startswith("Gehan (exact")  # the primary test stays exact with censoring (issue 12)
    assert c.p_logrank == pytest.approx(stats.logrank(stats.CensoredData(uncensored=arm),
                                        stats.CensoredData(uncensored=[2.5e5, 3.8e5], right=[4e5] * 3)).pvalue)
    assert c.rank_method == "exact" and c.p_rank == pytest.approx(2 / 252) and c.p == c.p_rank
    assert c.crossed_reference == 2 and c.n_censored == 3
    assert "median not reached" in c.note


def test_primary_test_cuts_every_run_at_the_design_horizon():
    # B's crossing at 9 comes after the horizon 5, so it is "not by 5" and ties with the runs censored there.
    p_tied, how, ranked = primary_test([1, 2, 5], [True, True, False], [9, 5, 5], [True, False, False],
                                       a_limits=5, b_limits=5)
    p_same, _, _ = primary_test([1, 2, 10], [True, True, True], [10, 10, 10], [True, True, True], a_limits=5, b_limits=5)
    assert how == "exact" and ranked == 2
    assert p_tied == pytest.approx(p_same)


def test_gehan_scores_and_p_match_a_brute_force_enumeration():
    import itertools

    t = np.array([1.0, 3.0, 4.0, 2.0, 4.0, 6.0])
    e = np.array([True, True, False, True, True, False])
    # run 0 (crossed at 1) is certainly before everyone; run 2 (not crossed by 4) certainly after 0, 1, 3 and 4
    assert gehan_scores(t, e).tolist() == [5.0, 1.0, -4.0, 3.0, -1.0, -4.0]
    scores = gehan_scores(t, e)
    stats_ = [scores[list(c)].sum() for c in itertools.combinations(range(6), 3)]
    obs = scores[:3].sum()
    want = min(1.0, 2 * min(np.mean(np.array(stats_) <= obs), np.mean(np.array(stats_) >= obs)))
    p, how = gehan_test(t[:3], e[:3], t[3:], e[3:])
    assert how == "exact" and p == pytest.approx(want)


def test_paired_analysis_with_censoring_uses_the_sign_test():
    r = paired_analysis([1, 2, 3, 4, 5], ALL, [10, 20, 30, 40, 50], [True, False, False, True, False])
    assert r.test.startswith("sign test (5 of 5")
    assert r.p == pytest.approx(stats.binomtest(0, 5).pvalue)
    assert math.isnan(r.ratio)


def test_identical_arms_no_crossings_gives_nan_logrank():
    assert math.isnan(logrank_test([5, 5], [False, False], [5, 5], [False, False]))


@pytest.mark.slow
def test_null_studies_reject_at_about_the_nominal_rate():
    rng = np.random.default_rng(11)
    n_sim = 600
    rejections = sum(gehan_test(rng.lognormal(0, 0.5, 5), ALL, rng.lognormal(0, 0.5, 5), ALL)[0] < 0.05
                     for _ in range(n_sim))
    # The exact 5-vs-5 test has attainable size 8/252 = 0.032 at alpha = 0.05.
    assert 0.01 <= rejections / n_sim <= 0.07
    censored = 0
    for _ in range(n_sim):
        a, b = rng.lognormal(0, 0.5, 5), rng.lognormal(0, 0.5, 5)
        censored += logrank_test(np.minimum(a, 1.5), a < 1.5, np.minimum(b, 1.5), b < 1.5) < 0.05
    assert 0.01 <= censored / n_sim <= 0.1


@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 5])
def test_ratio_ci_covers_a_known_shift_at_least_at_its_stated_level(n):
    rng = np.random.default_rng(5)
    n_sim, covered = 400, 0
    for _ in range(n_sim):
        r = time_ratio(rng.lognormal(math.log(0.1), 0.3, n), [True] * n, rng.lognormal(0, 0.3, n), [True] * n)
        covered += r.low <= 0.1 <= r.high
    level = 0.9 if n == 3 else 0.95  # 3 vs 3: 90 % is the highest level an exact interval reaches
    assert r.level == level and covered / n_sim >= level - 0.03


def test_the_interval_never_prints_zero_and_says_why_a_side_is_unbounded():
    # The quickstart's shape: every control censored at the horizon; the arm crossed at 1,504.
    r = time_ratio([1504] * 5, [True] * 5, [30_500] * 5, [False] * 5, a_limits=30_500, b_limits=30_500)
    assert math.isnan(r.ratio) and r.low == 0.0 and r.high == pytest.approx(1504 / 30_500)
    assert "lower side unbounded" in r.note and "did not cross" in r.note
    c = compare_samples([1504] * 5, [True] * 5, [30_500] * 5, [False] * 5, a_follow=30_500, b_follow=30_500)
    assert c.ratio_bound_kind == "at most" and c.ratio_bound == pytest.approx(1504 / 30_500)
    # one censored control out of 5 (review, item 6: the bootstrap printed "2.4-inf x" and "0.00")
    c = compare_samples([10, 11, 12, 13, 14], ALL, [30, 33, 36, 39, 40], [True] * 4 + [False], b_follow=40)
    assert 0 < c.ratio_low < c.ratio < c.ratio_high < 1 and c.ratio_note == ""
