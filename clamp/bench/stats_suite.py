"""``clamp bench --stats``: the statistics validated by simulation, design by design.

Why this file exists: a test that claims to be exact must be shown to keep its size in every design
the harness supports -- equal and per-arm budgets, relapses, runs stopped after their phase change,
persistence spans, triggered windows with ``outside_windows``, times measured from a per-run
reference -- and to have the power to see the effects the studies look for.  This module simulates
whole studies with clamp's own functions (:func:`clamp.phase.crossing_time`, :func:`clamp.phase.stop_point`,
:func:`clamp.phase.run_windows` and the primary test, :func:`clamp.analysis.stats.rank.primary_test`,
with the horizon :func:`clamp.analysis.stats.pipeline` uses) and reports, per design and number of runs
per arm: the test's size under the null (must stay at or below alpha + 2 standard errors), its power
against 2x and 3x effects, how often a stopped run's phase time differs from the same run trained
to its budget (must be 0), and the coverage of the time ratio's interval
(:func:`clamp.analysis.stats.rank.time_ratio`, each run followed to its own budget) of the true ratio,
under the null and under the 3x effect, next to the level the interval states (the nominal 95 %, or
less where no exact interval reaches it: 90 % at 3 vs 3).

The simulated curves (every 1,000 sequences; the rule: loss below 0.4 ln 2 with the default span of
three evaluations, W = 3,000):

- a run's phase time T is log-normal with median 60,000 and log-sd ``sigma`` (0.3 unless stated);
  under an effect k the intervened arm's median is 60,000 / k;
- its loss sits on a plateau at 0.69, drops to 0.05 along a logistic of width T / 20 centred at T,
  plus Gaussian noise (sd 0.02) and, on the plateau, rare one-evaluation dips below the threshold (1 %);
- ``relapse``: T + Exp(mean 40,000) sequences after its phase change the loss goes back to 0.60;
- ``stopping``: every run stops 10,000 + 0.25 T after its decided phase time (:class:`clamp.phase.StopAfterPhase`);
- ``persist``: the rule asks 10 evaluations (W = 10,000), and the plateau dips last 5 evaluations (2 % of
  evaluations start one);
- ``triggered``: a trigger fires at U ~ uniform(0.2, 0.8) T; the window opens 2,000 later for 20,000
  sequences, and inside it the intervention holds the loss at 0.05; the rule steps outside windows;
- ``relative``: a per-run reference event at uniform(5,000, 60,000), and the phase change T after it;
  the phase time is measured from the reference (a run whose phase change comes before it would be left
  out, as the statistics do).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from clamp.analysis.stats.rank import primary_test, time_ratio
from clamp.phase import THRESHOLD, PhaseRule, StopAfterPhase, crossing_time, run_windows, stop_point

STEP = 1_000
MEDIAN = 60_000.0


@dataclass(frozen=True)
class Design:
    """One simulated design: budgets per arm and what the curves and the rule do."""

    name: str
    budget_a: int
    budget_b: int
    relapse: bool = False
    stopping: bool = False
    persist: int | None = None  # None: the default span, three evaluations
    dips: float = 0.01
    dip_len: int = 1  # evaluations each dip below the threshold lasts
    triggered: bool = False
    relative: bool = False
    sigma: float = 0.3

    @property
    def rule(self) -> PhaseRule:
        rule = PhaseRule(threshold=THRESHOLD, outside_windows=self.triggered,
                         persist=self.persist if self.persist is not None else 3 * STEP)
        return rule


DESIGNS: tuple[Design, ...] = (
    Design("equal budgets", 150_000, 150_000),
    Design("per-arm budgets", 90_000, 200_000),
    Design("per-arm budgets + relapse", 90_000, 200_000, relapse=True),
    Design("stopping (StopAfterPhase)", 150_000, 150_000, stopping=True),
    Design("stopping + relapse", 150_000, 150_000, stopping=True, relapse=True),
    Design("persist (W = 10 evaluations), 5-evaluation dips", 150_000, 150_000, persist=10 * STEP, dips=0.02,
           dip_len=5),
    Design("triggered windows + outside_windows", 150_000, 150_000, triggered=True),
    Design("relative_to a per-run event", 200_000, 200_000, relative=True),
    Design("equal budgets, log-sd 0.5", 200_000, 200_000, sigma=0.5),
)

TRIGGER_IV = {"name": "clamp", "windows": [{"start": {"when": "m", "op": "<", "threshold": 0.0, "delay": 2_000,
                                                      "duration": 20_000}, "stop": None}]}
STOP = StopAfterPhase(margin=10_000, relative=0.25)


def _run(design: Design, T: float, budget: int, rng: np.random.Generator) -> dict:
    """One simulated run: its curve, windows, reference time, and (when stopping) where it stopped.

    ``T`` is the phase time drawn for the run; under ``relative`` it is the time from the run's reference
    event, which comes first.
    """
    ref = STEP * math.ceil(rng.uniform(5_000, 60_000) / STEP) if design.relative else 0.0
    T = T + ref
    x = np.arange(0, budget + 1, STEP, dtype=float)
    width = max(T / 20, STEP / 4)
    y = 0.05 + 0.64 / (1 + np.exp(np.clip((x - T) / width, -60, 60))) + rng.normal(0, 0.02, x.size)
    plateau = x < T - 3 * width
    for start in np.flatnonzero(plateau & (rng.random(x.size) < design.dips)):
        y[start:start + design.dip_len] = np.where(plateau[start:start + design.dip_len], 0.2, y[start:start + design.dip_len])
    if design.relapse:
        y[x >= T + rng.exponential(40_000)] = 0.60
    windows: list = []
    if design.triggered:
        fired = STEP * math.ceil(rng.uniform(0.2, 0.8) * T / STEP)
        windows = run_windows([TRIGGER_IV], {"trigger/clamp/start": fired})
        for a, b in windows:
            y[(x >= a) & (x < b)] = 0.05
    out = {"x": x, "y": y, "windows": windows, "ref": ref, "budget": budget, "mismatch": 0}
    if design.stopping:
        full = crossing_time(x, y, design.rule, windows=windows)
        _, at = stop_point(x, y, design.rule, STOP, windows=windows)
        if at is not None:
            keep = x <= at
            out["x"], out["y"] = x[keep], y[keep]
            cut = crossing_time(out["x"], out["y"], design.rule, windows=windows)
            out["mismatch"] = int((cut.event, cut.time) != (full.event, full.time))
    return out


def _arm(design: Design, n: int, median: float, budget: int,
         rng: np.random.Generator) -> tuple[list, list, list, list, int]:
    """Phase times, events, test limits and follow-up limits of one arm's runs (as the statistics compute them)."""
    times, events, limits, follow, mismatches = [], [], [], [], 0
    W = design.rule.span
    horizon = min(design.budget_a, design.budget_b) - W
    for T in median * np.exp(rng.normal(0, design.sigma, n)):
        r = _run(design, float(T), budget, rng)
        mismatches += r["mismatch"]
        c = crossing_time(r["x"], r["y"], design.rule, windows=r["windows"])
        t = c.time
        if design.relative:
            if c.event and t < r["ref"]:
                continue  # the phase change came before the reference: left out (clamp.analysis.stats.relative)
            t -= r["ref"]
        times.append(t)
        events.append(c.event)
        limits.append(horizon - r["ref"])
        follow.append(budget - W - r["ref"])
    return times, events, limits, follow, mismatches


_TARGETS: dict[tuple[str, float], float] = {}


def target_ratio(design: Design, effect: float, runs: int = 3_000, seed: int = 12345) -> float:
    """The time ratio the interval estimates in this design: the median, over pairs of one run of each arm, of the
    ratio of their phase times as the rule measures them (the Hodges–Lehmann target), from ``runs`` runs per arm
    trained long enough to cross.  1 under the null; close to 1 / ``effect`` where the effect scales the measured
    times (the evaluation grid and the drop's width shift it a little), and not 1 / ``effect`` where the design
    measures something else (a triggered window of fixed length hides an early phase change until it closes).
    """
    if effect == 1.0:
        return 1.0
    key = (design.name, effect)
    if key not in _TARGETS:
        rng = np.random.default_rng(seed)
        long = replace(design, stopping=False)
        logs = []
        for median in (MEDIAN / effect, MEDIAN):
            t = []
            for T in median * np.exp(rng.normal(0, design.sigma, runs)):
                r = _run(long, float(T), int(20 * MEDIAN), rng)
                c = crossing_time(r["x"], r["y"], design.rule, windows=r["windows"])
                t.append(c.time - r["ref"] if c.event else math.inf)
            logs.append(np.log(np.maximum(np.array(t), 1.0)))
        with np.errstate(invalid="ignore"):
            diffs = np.concatenate([logs[0][i::10][:, None] - logs[1][None, :] for i in range(10)], axis=None)
        diffs = np.nan_to_num(diffs, nan=0.0, posinf=np.inf, neginf=-np.inf)  # two runs that never cross: a tie
        _TARGETS[key] = float(np.exp(np.median(diffs)))
    return _TARGETS[key]


@dataclass(frozen=True)
class Cell:
    """What one (design, runs per arm, effect) simulation measured."""

    rejected: float  # fraction of studies with primary p <= 0.05
    mismatches: int  # stopped runs timed differently from the same run trained on
    coverage: float  # fraction of studies whose time-ratio interval holds the design's true ratio (target_ratio)
    level: float  # the level the interval states (the lowest over the studies)


def simulate(design: Design, n: int, effect: float, sims: int, seed: int = 0) -> Cell:
    """Simulate ``sims`` studies: the primary test's rejections, stopped-run mismatches, the interval's coverage."""
    target = target_ratio(design, effect)
    rng = np.random.default_rng(seed)
    hits = mismatches = covered = tried = 0
    level = 1.0
    for _ in range(sims):
        ta, ea, la, fa, ma = _arm(design, n, MEDIAN / effect, design.budget_a, rng)
        tb, eb, lb, fb, mb = _arm(design, n, MEDIAN, design.budget_b, rng)
        mismatches += ma + mb
        if len(ta) < 2 or len(tb) < 2:
            continue
        p, _, _ = primary_test(ta, ea, tb, eb, a_limits=la, b_limits=lb, seed=seed)
        hits += p <= 0.05
        r = time_ratio(ta, ea, tb, eb, a_limits=fa, b_limits=fb, seed=seed)
        tried += 1
        covered += r.low <= target <= r.high
        level = min(level, r.level)
    return Cell(rejected=hits / sims, mismatches=mismatches, coverage=covered / max(tried, 1), level=level)


def run_suite(designs: Sequence[Design] = DESIGNS, ns: Sequence[int] = (3, 4, 5, 8), sims: int = 2000,
              effects: Sequence[float] = (2.0, 3.0), seed: int = 0, quiet: bool = False) -> list[dict]:
    """Every (design, n) cell: size, power at each effect, stopped-run mismatches; printed as it goes."""
    rows = []
    for d in designs:
        for n in ns:
            t0 = time.perf_counter()
            null = simulate(d, n, 1.0, sims, seed)
            row = {"design": d.name, "n_per_arm": n, "sims": sims, "size": null.rejected,
                   "size_limit": 0.05 + 2 * math.sqrt(0.05 * 0.95 / sims), "stop_mismatches": null.mismatches,
                   "ci_level": null.level, "coverage_null": null.coverage}
            for k in effects:
                cell = simulate(d, n, k, sims, seed + 1)
                row[f"power_{k:g}x"] = cell.rejected
                row[f"coverage_{k:g}x"] = cell.coverage
                row["ci_level"] = min(row["ci_level"], cell.level)
                row["stop_mismatches"] += cell.mismatches
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            if not quiet:
                print(_line(row, effects), flush=True)
    return rows


COVERAGE_FLOOR = 0.93  # the interval's coverage must reach this wherever it states the nominal level (n >= 5)


def coverage_ok(row: dict) -> bool:
    """Whether the time-ratio interval covers as it says: at least :data:`COVERAGE_FLOOR` where it states the
    nominal 95 % with 5 or more runs per arm, at least its stated level less 0.03 (two standard errors at
    2,000 studies) elsewhere."""
    cov = min(row["coverage_null"], row["coverage_3x"])
    floor = COVERAGE_FLOOR if row["n_per_arm"] >= 5 else row["ci_level"] - 0.03
    return cov >= floor


def _line(row: dict, effects: Sequence[float]) -> str:
    ok = "ok" if row["size"] <= row["size_limit"] else "TOO LARGE"
    power = " ".join(f"{row[f'power_{k:g}x']:.3f}" for k in effects)
    cov = f"{row['ci_level'] * 100:.4g} %: {row['coverage_null']:.3f} / {row['coverage_3x']:.3f}" \
          + ("" if coverage_ok(row) else " (LOW)")
    return (f"| {row['design']} | {row['n_per_arm']} | {row['size']:.3f} ({ok}) | {power} | {cov} | "
            f"{row['stop_mismatches']} |")


BEGIN, END = "<!-- clamp bench --stats: begin -->", "<!-- clamp bench --stats: end -->"


def write_docs_table(path: Path, rows: list[dict], effects: Sequence[float], *, seconds: float) -> None:
    """Replace the table between :data:`BEGIN` and :data:`END` in ``path`` with ``rows`` (the docs quote the suite
    as it ran; ``tests/analysis/stats/test_reporting.py`` checks the two agree)."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no '{BEGIN}' ... '{END}' lines to put the table between")
    head = ("| design | runs per arm | size | power at " + " / ".join(f"{k:g}x" for k in effects)
            + " | interval level: coverage under the null / at 3x | stopped runs timed differently |")
    table = [head, "|---|---|---|---|---|---|", *(_line(r, effects) for r in rows), "",
             f"`clamp bench --stats` ({rows[0]['sims']:,} studies per cell, seed 0): {len(rows)} cells in "
             f"{seconds:.0f} s on this project's 2-core machine."]
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    path.write_text(before + BEGIN + "\n" + "\n".join(table) + "\n" + END + after)


def main(argv: Sequence[str] | None = None) -> int:
    """``clamp bench --stats``: print the table (markdown) and write it as CSV."""
    p = argparse.ArgumentParser(prog="clamp bench --stats", description=__doc__.splitlines()[0])
    p.add_argument("--sims", type=int, default=2000, help="simulated studies per cell (default 2000)")
    p.add_argument("--n", type=int, nargs="+", default=[3, 4, 5, 8], help="runs per arm")
    p.add_argument("--csv", default="results/bench_stats.csv", help="where to write the table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--docs", default=None, metavar="MD",
                   help="also write the table into this markdown file, between its '<!-- clamp bench --stats: begin -->' "
                        "and '... end -->' lines (docs/statistics.md)")
    args = p.parse_args(argv)
    effects = (2.0, 3.0)
    print(f"primary test (Gehan permutation on runs cut at the design's horizon), alpha = 0.05, {args.sims} simulated "
          f"studies per cell; size must stay <= {0.05 + 2 * math.sqrt(0.05 * 0.95 / args.sims):.3f}\n")
    print("| design | runs per arm | size | power at " + " / ".join(f"{k:g}x" for k in effects)
          + " | interval level: coverage under the null / at 3x | stopped runs timed differently |")
    print("|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    rows = run_suite(ns=args.n, sims=args.sims, effects=effects, seed=args.seed)
    path = Path(args.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if args.docs:
        write_docs_table(Path(args.docs), rows, effects, seconds=time.perf_counter() - t0)
    bad = [r for r in rows if r["size"] > r["size_limit"] or r["stop_mismatches"] or not coverage_ok(r)]
    print(f"\n{len(rows)} cells in {time.perf_counter() - t0:.0f} s; {len(bad)} out of bounds; table written to {path}")
    return 1 if bad else 0


__all__ = ["COVERAGE_FLOOR", "Cell", "DESIGNS", "Design", "coverage_ok", "main", "run_suite", "simulate",
           "target_ratio", "write_docs_table"]
