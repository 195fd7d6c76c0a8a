"""The warnings of stats.md: what a reader must know before believing a sentence.

Why this file exists: every number in stats.md comes with the conditions under
which it can be trusted — runs left out, runs censored or relapsed, a design
too small to reach alpha, a phase rule the task's metric cannot cross.  These
functions only read the phase_times and stats tables and the study record;
they compute no statistic.
"""

from __future__ import annotations

import math

import pandas as pd

from clamp.analysis.stats.compare import MIN_RUNS, too_few_runs
from clamp.analysis.stats.families import family_label, seeds_advice
from clamp.phase import PhaseRule
from clamp.analysis.stats.runs import StudySpec


def task_rule_warnings(spec: StudySpec) -> list[str]:
    """Arms whose task defines its own default phase rule while the study uses the generic default.

    The generic default (train/loss below 0.4·ln 2) is the few-shot task's; on
    the repeated-token task the total training loss cannot fall that low (the
    first repeat is random: its loss stays near ln(vocab)), so every run would be
    censored without a word.  A task config with ``default_phase_rule()`` names
    the rule that fits it.

    Example:
        >>> s = StudySpec.from_dict({"name": "r", "seeds": [0], "control": None,
        ...                          "arms": [{"name": "a", "task": {"kind": "repeat", "vocab": 64, "half": 10}}]})
        >>> task_rule_warnings(s)[0][:60]
        "Arm a trains the 'repeat' task, whose metric cannot cross th"
    """
    if spec.rules[0] != PhaseRule():
        return []
    out = []
    for arm in spec.arms:
        kind = arm.task.get("kind")
        if not kind or kind == "fewshot":
            continue
        from clamp.errors import ConfigError
        from clamp.tasks import task_from_dict  # only for non-default tasks: imports torch

        try:
            cfg = task_from_dict(arm.task)
        except ConfigError:
            continue  # a task kind this checkout does not know: nothing to compare with
        default = getattr(cfg, "default_phase_rule", None)
        rule = default() if callable(default) else None
        if rule is None or rule == spec.rules[0]:
            continue
        thr = f"{rule.threshold:.3g}"
        op = "<" if rule.direction == "below" else ">"
        out.append(f"Arm {arm.name} trains the {kind!r} task, whose metric cannot cross the study's phase rule "
                   f"({spec.rules[0].describe()}, the few-shot task's default): its runs come out censored. The "
                   f"task's own rule is {rule.describe()}; recompute with `clamp stats <study> --phase "
                   f"'{rule.metric}{op}{thr}'`, or give the study phase=[{rule!r}].")
    return out


def relapse_lines(phase_times: pd.DataFrame, rule_index: int) -> list[str]:
    """Warnings listing the runs that went back past the threshold under rule ``rule_index``.

    A run that relapsed after its (decided) phase change keeps it; one that crossed but never stayed
    past the threshold for the rule's span is censored.

    Example:
        >>> df = pd.DataFrame({"rule_index": 0, "rule": "train/loss < 0.277", "estimator": "threshold", "arm": "m",
        ...                    "seed": [0], "relapsed": True, "event": True, "first_crossing": 4512.0, "time": 4512.0,
        ...                    "last_eval": 20000.0})
        >>> relapse_lines(df, 0)[0]
        "Relapsed after their phase change under train/loss < 0.277 (the phase change stands; the metric was back past the threshold at the last evaluation: transient learning, or a window's own effect): m/seed0 (phase change at 4,512, last evaluation 20,000)."
    """
    sel = phase_times[(phase_times["rule_index"] == rule_index) & (phase_times["estimator"] == "threshold")
                      & phase_times["relapsed"]]
    if sel.empty:
        return []
    out = []
    after = sel[sel["event"].astype(bool)]
    if len(after):
        runs = ", ".join(f"{r.arm}/seed{r.seed} (phase change at {r.time:,.0f}, last evaluation {r.last_eval:,.0f})"
                         for r in after.itertuples())
        out.append(f"Relapsed after their phase change under {sel['rule'].iloc[0]} (the phase change stands; the "
                   "metric was back past the threshold at the last evaluation: transient learning, or a window's own "
                   f"effect): {runs}.")
    never = sel[~sel["event"].astype(bool)]
    if len(never):
        runs = ", ".join(f"{r.arm}/seed{r.seed} (first crossed at {r.first_crossing:,.0f}, censored at {r.time:,.0f})"
                         for r in never.itertuples())
        out.append(f"Crossed but never stayed past the threshold for the rule's span under {sel['rule'].iloc[0]} "
                   f"(censored, not counted as a phase change): {runs}.")
    return out


def window_lines(phase_times: pd.DataFrame, rules: tuple[PhaseRule, ...]) -> list[str]:
    """Runs whose phase time falls inside one of their intervention windows under a rule that does not step outside."""
    out = []
    for k, rule in enumerate(rules):
        sel = phase_times[(phase_times["rule_index"] == k) & (phase_times["estimator"] == "threshold")
                          & phase_times["in_window"]]
        if sel.empty:
            continue
        runs = ", ".join(f"{r.arm}/seed{r.seed} ({r.time:,.0f})" for r in sel.itertuples())
        out.append(f"Phase times inside an intervention window of their run under {rule.describe()}: {runs}. There "
                   "the intervention's own effect on the metric may be what was timed; to time the phase change from "
                   "evaluations outside the windows, use PhaseRule(outside_windows=True) (or `clamp stats --phase ... "
                   "--outside-windows`).")
    return out


def horizon_lines(stats_df: pd.DataFrame) -> list[str]:
    """Headline comparisons whose test horizon (from the design) comes before an arm's median phase time, in one line."""
    late_ones = []
    head = stats_df[stats_df["headline"]] if len(stats_df) else stats_df
    for r in head.itertuples():
        h = float(r.horizon)
        late = [name for name, m in ((r.arm, r.median_arm), (r.reference, r.median_reference))
                if math.isfinite(h) and (not math.isfinite(m) or m > h)]
        if late and math.isfinite(r.p):
            late_ones.append(f"{r.arm} vs {r.reference} (horizon {h:,.0f}, after which {' and '.join(late)}'s median "
                             f"lies; {r.n_ranked} of {r.n_arm + r.n_reference} runs ranked by time)")
    if not late_ones:
        return []
    return [f"The test's horizon (the budget both arms were planned to reach, minus the rule's span) comes before an "
            f"arm's median phase time in {len(late_ones)} comparison(s): {'; '.join(late_ones)}. There the test mostly "
            "asks 'crossed by the horizon or not'; a longer budget for the shorter arm would let it rank more runs. "
            "The time ratio and its interval use every run's whole follow-up."]


def stopped_lines(phase_times: pd.DataFrame, spec: StudySpec) -> list[str]:
    """Rules other than the one the stop watched, computed on runs that stopped after their phase change."""
    if spec.stop_rule is None:
        return []
    out = []
    for k, rule in enumerate(spec.rules):
        if rule == spec.stop_rule:
            continue
        sel = phase_times[(phase_times["rule_index"] == k) & (phase_times["estimator"] == "threshold")
                          & phase_times["stopped_at"].notna() & ~phase_times["event"].astype(bool)
                          & phase_times["included"]]
        if len(sel):
            runs = ", ".join(f"{r.arm}/seed{r.seed} (stopped at {r.stopped_at:,.0f})" for r in sel.itertuples())
            out.append(f"Under {rule.describe()}, runs that stopped after their phase change under "
                       f"{spec.stop_rule.describe()} are censored where their data end (not by design): {runs}. "
                       "Their order against later crossings is unknown and counts 0 in the test; this rule's "
                       "comparisons are not exact. Train them to their budgets (no stop_after_phase) to time it fully.")
    return out


def floor_lines(stats_df: pd.DataFrame, spec: StudySpec, alpha: float) -> list[str]:
    """Comparisons that cannot reach ``alpha`` whatever the data, one line per family, naming the real limit
    (the exact test's floor for these numbers of runs, or that floor times the family's correction) and
    the fewest seeds that would lift it."""
    out = []
    head = stats_df[stats_df["headline"] & (stats_df["family_size"] > 0)] if len(stats_df) else stats_df
    for family, g in head.groupby("family", sort=False):
        stuck = g[~g["can_reach_alpha"].astype(bool)]
        if stuck.empty:
            continue
        correction = str(g["correction"].iloc[0])
        own = stuck[stuck["min_p"] > alpha]
        multiplied = stuck[stuck["min_p"] <= alpha]
        parts = []
        if len(own):
            sizes = "; ".join(f"{r.arm} vs {r.reference} ({r.n_arm} vs {r.n_reference}: {r.min_p:.2g})"
                              for r in own.itertuples())
            parts.append(f"too few runs for an exact test to go below alpha = {alpha:g}: {sizes}")
        if len(multiplied):
            names = ", ".join(f"{r.arm} vs {r.reference}" for r in multiplied.itertuples())
            best = float(multiplied["reachable_p"].min())
            parts.append(f"{names}: each p is at least {float(multiplied['min_p'].min()):.2g}, but "
                         f"{family_label(str(family), correction, len(g))} makes the smallest adjusted p {best:.2g}")
        ref = spec.control if all(r == spec.control for r in g["reference"]) else None
        advice = seeds_advice([(int(a), int(b)) for a, b in zip(g["n_arm"], g["n_reference"])],
                              correction, alpha, reference=ref, shared_reference=ref is not None)  # type: ignore[arg-type]
        out.append(f"In the {family} family, {len(stuck)} of {len(g)} comparison(s) cannot reach significance "
                   f"whatever the data: {'; '.join(parts)}." + (f" {advice[0].upper()}{advice[1:]}." if advice else ""))
    return out


def logrank_lines(stats_df: pd.DataFrame) -> list[str]:
    """One line for every headline comparison whose asymptotic log-rank p is below the exact floor (it is not used)."""
    head = stats_df[stats_df["headline"]] if len(stats_df) else stats_df
    low = [r for r in head.itertuples() if math.isfinite(r.p_logrank) and r.p_logrank < r.min_p]
    if not low:
        return []
    names = ", ".join(f"{r.arm} vs {r.reference} ({r.p_logrank:.2g} < {r.min_p:.2g})" for r in low)
    return [f"The asymptotic log-rank p (a secondary column of stats.csv) is below anything an exact test can give "
            f"with these runs for: {names}; it is not used."]


def too_few_lines(stats_df: pd.DataFrame, phase_times: pd.DataFrame, spec: StudySpec) -> list[str]:
    """Headline comparisons not computed for lack of runs, with the cause: runs that did not finish, or too few seeds."""
    head = stats_df[stats_df["headline"]] if len(stats_df) else stats_df
    few = head[[too_few_runs(a, b) for a, b in zip(head["n_arm"], head["n_reference"])]]
    if few.empty:
        return []
    prim = phase_times[(phase_times["rule_index"] == 0) & (phase_times["estimator"] == "threshold")]
    out = []
    for r in few.itertuples():
        causes = []
        for name, n in ((r.arm, r.n_arm), (r.reference, r.n_reference)):
            mine = prim[prim["arm"] == name]
            unfinished = mine[mine["status"] != "finished"]
            left_out = mine[(mine["status"] == "finished") & ~mine["included"].astype(bool)]
            if n >= MIN_RUNS:
                continue
            if len(unfinished):
                causes.append(f"{len(unfinished)} run(s) of {name} did not finish "
                              f"({', '.join(sorted(set(unfinished['status'])))}): rerun `clamp run` to resume them")
            if len(left_out):
                causes.append(f"{len(left_out)} run(s) of {name} have no usable phase time (see `excluded_note`)")
            if not len(unfinished) and not len(left_out):
                causes.append(f"the study has {len(spec.seeds)} seed(s) for {name}: add seeds")
        out.append(f"Not compared: {r.arm} vs {r.reference} ({r.n_arm} vs {r.n_reference} runs; a comparison needs "
                   f"{MIN_RUNS} per arm): {'; '.join(causes) or 'too few runs'}.")
    return out


def study_warnings(spec: StudySpec, phase_times: pd.DataFrame, stats_df: pd.DataFrame, alpha: float,
                   correction: str) -> list[str]:
    """Every warning of stats.md, once each: exclusions, censoring, relapses, windows, stops, horizons, floors."""
    out = []
    prim = phase_times[(phase_times["rule_index"] == 0) & (phase_times["estimator"] == "threshold")]
    excluded = prim[prim["status"] != "finished"]
    if len(excluded):
        runs = ", ".join(f"{r.arm}/seed{r.seed} ({r.status})" for r in excluded.itertuples())
        out.append(f"Excluded from all comparisons (not finished): {runs}.")
    cens = prim[prim["included"] & prim["censored"] & ~prim["relapsed"]]
    if len(cens):
        out.append(f"{len(cens)} finished run(s) had no phase change and are right-censored (at their last "
                   "evaluation minus the rule's span); their arms' medians come from Kaplan–Meier estimates, and the "
                   "test counts them as not crossed by its horizon.")
    for k in range(len(spec.rules)):
        out += relapse_lines(phase_times, k)
    out += window_lines(phase_times, spec.rules)
    out += stopped_lines(phase_times, spec)
    out += horizon_lines(stats_df)
    no_metric = prim[(prim["status"] == "finished") & prim["time"].isna()]
    if len(no_metric):
        why = sorted(set(no_metric["note"].dropna()))
        out.append(f"{len(no_metric)} finished run(s) have no phase time under {spec.rules[0].describe()} and were "
                   f"left out ({'; '.join(why)}).")
    out += task_rule_warnings(spec)
    out += too_few_lines(stats_df, phase_times, spec)
    out += floor_lines(stats_df, spec, alpha)
    out += logrank_lines(stats_df)
    head = stats_df[stats_df["headline"] & (stats_df["family_size"] > 0)] if len(stats_df) else stats_df
    paired = head[(head["n_pairs"] > 0) & (head["paired_min_p"] > alpha)]
    if len(paired):
        floors = sorted(set(zip(paired["n_pairs"], paired["paired_min_p"])))
        out.append(f"The paired analyses (secondary, in stats.csv) cannot reach p < {alpha:g}: "
                   + "; ".join(f"{n} shared seeds give at least {mp:.3g}" for n, mp in floors) + ".")
    return out
