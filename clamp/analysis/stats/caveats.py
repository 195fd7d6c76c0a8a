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

from clamp.analysis.stats.compare import MIN_RUNS, min_rank_p, too_few_runs
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
    """Primary comparisons whose test horizon (from the design) comes before an arm's median phase time."""
    out = []
    primary = stats_df[stats_df["primary"]] if len(stats_df) else stats_df
    for r in primary.itertuples():
        h = float(r.horizon)
        late = [name for name, m in ((r.arm, r.median_arm), (r.reference, r.median_reference))
                if math.isfinite(h) and (not math.isfinite(m) or m > h)]
        if late and math.isfinite(r.p):
            out.append(f"{r.arm} vs {r.reference}: the test's horizon ({h:,.0f} sequences: the budget both arms were "
                       f"planned to reach, minus the rule's span) comes before the median phase time of "
                       f"{' and '.join(late)}; the test mostly compares crossed-by-the-horizon or not "
                       f"({r.n_ranked} of {r.n_arm + r.n_reference} runs ranked by time). A longer budget for the "
                       "shorter arm would let it rank more runs.")
    return out


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


def study_warnings(spec: StudySpec, phase_times: pd.DataFrame, stats_df: pd.DataFrame, alpha: float,
                   correction: str) -> list[str]:
    """Every warning of stats.md, primary rule first (design floors, exclusions, censoring, relapses, task rules)."""
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
    primary = stats_df[stats_df["primary"]] if len(stats_df) else stats_df
    few = primary[[too_few_runs(a, b) for a, b in zip(primary["n_arm"], primary["n_reference"])]]
    if len(few):
        names = ", ".join(f"{r.arm} vs {r.reference} ({r.n_arm} vs {r.n_reference})" for r in few.itertuples())
        out.append(f"Not compared (a comparison needs at least {MIN_RUNS} finished runs per arm): {names}. Add seeds.")
    primary = primary.drop(few.index)
    floor: dict[tuple[int, int, float], list[str]] = {}
    family: list[str] = []
    paired: dict[tuple[int, float], list[str]] = {}
    for r in primary.itertuples():
        name = f"{r.arm} vs {r.reference}"
        if r.min_p > alpha:
            floor.setdefault((r.n_arm, r.n_reference, r.min_p), []).append(name)
        elif not r.can_reach_alpha:
            family.append(f"{name} (smallest reachable p {r.min_p:.3g})")
        if math.isfinite(r.p_logrank) and r.p_logrank < r.min_p:
            out.append(f"{name}: the asymptotic log-rank p ({r.p_logrank:.3g}, secondary column of stats.csv) is "
                       f"below anything an exact test can give with {r.n_arm} vs {r.n_reference} runs "
                       f"({r.min_p:.3g}); it is not used.")
        if r.n_pairs and r.paired_min_p > alpha:
            paired.setdefault((r.n_pairs, r.paired_min_p), []).append(name)
    for (n1, n2, mp), names in floor.items():
        out.append(f"With {n1} vs {n2} runs the smallest p the exact test can reach is {mp:.3g} > alpha = {alpha:g}: "
                   f"no claim of a difference can reach alpha for {', '.join(names)}, whatever the data. Add seeds.")
    if family:
        out.append(f"After {correction} correction across {len(primary)} comparisons these cannot reach adjusted "
                   f"p < {alpha:g}: {', '.join(family)}. Add seeds or compare fewer arms.")
    for (n, mp), names in paired.items():
        out.append(f"The paired analyses (secondary, in stats.csv) of {', '.join(names)} cannot reach p < {alpha:g} "
                   f"with {n} shared seeds (floor {mp:.3g}).")
    if len(primary):
        n1, n2 = int(primary["n_arm"].min()), int(primary["n_reference"].min())
        out.append(f"Design floor: with {n1} vs {n2} runs the smallest two-sided p the exact rank test can reach is "
                   f"{min_rank_p(n1, n2):.3g} (alpha = {alpha:g}, {len(primary)} comparison(s), {correction} "
                   "correction).")
    return out
