"""A fast version of ``clamp bench --stats``: the primary test keeps its size in the designs that broke it before,
stopped runs are timed as if trained on, and a 3x effect at 5 vs 5 is seen."""

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
    size, mismatches = simulate(design, 5, 1.0, SIMS, seed=3)
    assert size <= LIMIT and mismatches == 0


@pytest.mark.slow
def test_power_at_three_times_sooner_with_five_runs_per_arm():
    power, _ = simulate(DESIGNS[0], 5, 3.0, 200, seed=4)
    assert power >= 0.8
