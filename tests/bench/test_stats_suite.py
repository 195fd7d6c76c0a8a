"""A fast version of ``clamp bench --stats``: the primary test keeps its size in the designs that broke it before,
stopped runs are timed as if trained on, a 3x effect at 5 vs 5 is seen, and the time ratio's interval covers."""

import math

import pytest

from clamp.bench.stats_suite import DESIGNS, simulate

SIMS = 300
LIMIT = 0.05 + 3 * math.sqrt(0.05 * 0.95 / SIMS)  # three standard errors at this many studies


@pytest.mark.slow
@pytest.mark.parametrize("name", ["per-arm budgets + relapse", "stopping + relapse",
                                  "triggered windows + outside_windows", "relative_to a per-run event"])
def test_size_holds_and_stopped_runs_match(name):
    design = next(d for d in DESIGNS if d.name == name)
    cell = simulate(design, 5, 1.0, SIMS, seed=3)
    assert cell.rejected <= LIMIT and cell.mismatches == 0
    assert cell.level == 0.95 and cell.coverage >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / SIMS)


@pytest.mark.slow
def test_power_at_three_times_sooner_with_five_runs_per_arm():
    cell = simulate(DESIGNS[0], 5, 3.0, 200, seed=4)
    assert cell.rejected >= 0.8 and cell.coverage >= 0.9


@pytest.mark.slow
def test_three_runs_per_arm_state_the_level_their_interval_reaches():
    cell = simulate(DESIGNS[0], 3, 3.0, SIMS, seed=5)
    assert cell.level == pytest.approx(0.9) and cell.coverage >= 0.9 - 3 * math.sqrt(0.1 * 0.9 / SIMS)
