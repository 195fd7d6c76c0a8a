"""Plain-language sentences for the study's index page (stats.md).

Why this file exists: a reader of the study page should get the causal claim
in one line per comparison, with its uncertainty and its caveats (runs that
never crossed, a design too small to reach the chosen alpha), without reading
stats.csv.  These functions only format; they compute nothing.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from clamp.analysis.stats.compare import MIN_RUNS
from clamp.phase import PhaseRule


def fmt_p(p: float) -> str:
    """``p = 0.008``, ``p < 0.001`` or ``p = n/a``.

    Example:
        >>> fmt_p(0.00794), fmt_p(1e-5), fmt_p(float("nan"))
        ('p = 0.008', 'p < 0.001', 'p = n/a')
    """
    if p is None or not math.isfinite(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def fmt_times(x: float) -> str:
    """A speed factor: ``9.1``, ``13``, ``∞``.

    Example:
        >>> fmt_times(9.123), fmt_times(13.04), fmt_times(float("inf"))
        ('9.1', '13', '∞')
    """
    if math.isinf(x):
        return "∞"
    if math.isnan(x):
        return "?"
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _speed(ratio: float, low: float, high: float, confidence: float, reference: str) -> str:
    ci = f"{confidence * 100:.0f} % CI"
    with_ci = math.isfinite(low) or math.isfinite(high)
    if ratio == 1:
        txt = f"phase change at the same median time as {reference}"
        return txt + (f" (ratio {confidence * 100:.0f} % CI {low:.2g}–{high:.2g})" if with_ci else "")
    if ratio < 1:
        fast = 1 / ratio if ratio > 0 else math.inf
        lo_s = 1 / high if high > 0 else math.inf
        hi_s = 1 / low if low > 0 else math.inf
        txt = f"phase change {fmt_times(fast)}× sooner than {reference}"
        return txt + (f" ({ci} {fmt_times(lo_s)}–{fmt_times(hi_s)}×)" if with_ci else "")
    txt = f"phase change {fmt_times(ratio)}× later than {reference}"
    return txt + (f" ({ci} {fmt_times(low)}–{fmt_times(high)}×)" if with_ci else "")


def comparison_sentence(row: Mapping[str, object], *, correction: str = "holm", control: str | None = None) -> str:
    """One line such as ``match: phase change 9.1× sooner than control (95 % CI 6.2–13×), p = 0.008 (…, Holm), 5/5 runs crossed``.

    Args:
        row: a row of stats.csv (a dict or a pandas row).
        correction: the multiple-comparison correction applied to ``p_adjusted``.
        control: the study's control arm; comparisons against another reference are labelled "arm vs reference".

    Example:
        >>> row = dict(arm="match", reference="control", ratio=0.11, ratio_low=0.077, ratio_high=0.16, ratio_bound=float("nan"),
        ...            ratio_bound_kind="", confidence=0.95, p_adjusted=0.0079, test="Gehan (exact)", crossed_arm=5, n_arm=5,
        ...            crossed_reference=5, n_reference=5, median_reference=3e5)
        >>> comparison_sentence(row)
        'match: phase change 9.1× sooner than control (95 % CI 6.2–13×), p = 0.008 (Gehan (exact), Holm), 5/5 runs crossed (control 5/5).'
        >>> comparison_sentence({**row, "n_arm": 1, "n_reference": 1})
        'match: not compared with control: a comparison needs at least 2 runs per arm (has 1 vs 1 finished runs). Add seeds.'
    """
    arm, ref = str(row["arm"]), str(row["reference"])
    label = arm if control is None or ref == control else f"{arm} vs {ref}"
    n_arm, n_ref = int(row["n_arm"]), int(row["n_reference"])  # type: ignore[call-overload]
    if min(n_arm, n_ref) < MIN_RUNS:
        return (f"{label}: not compared with {ref}: a comparison needs at least {MIN_RUNS} runs per arm "
                f"(has {n_arm} vs {n_ref} finished runs). Add seeds.")
    ratio, low, high = float(row["ratio"]), float(row["ratio_low"]), float(row["ratio_high"])
    conf = float(row["confidence"])
    if math.isfinite(ratio):
        effect = _speed(ratio, low, high, conf, ref)
    else:
        bound, kind = float(row["ratio_bound"]), str(row["ratio_bound_kind"] or "")
        if kind == "at most" and math.isfinite(bound):
            effect = (f"phase change at least {fmt_times(1 / bound)}× sooner than {ref} "
                      f"({ref}'s median not reached)" if bound < 1 else
                      f"median time ratio undefined ({ref}'s median not reached)")
        elif kind == "at least" and math.isfinite(bound):
            effect = (f"phase change at least {fmt_times(bound)}× later than {ref} ({arm}'s median not reached)"
                      if bound > 1 else f"median time ratio undefined ({arm}'s median not reached)")
        else:
            effect = "median time ratio undefined (neither median reached)"
    corr = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "uncorrected"}.get(correction, correction)
    p = fmt_p(float(row["p_adjusted"]))
    rel_a, rel_b = int(row.get("relapsed_arm", 0) or 0), int(row.get("relapsed_reference", 0) or 0)
    rel = lambda n: f", {n} relapsed after it" if n else ""  # noqa: E731
    crossed = (f"{row['crossed_arm']}/{row['n_arm']} runs crossed{rel(rel_a)} "
               f"({ref} {row['crossed_reference']}/{row['n_reference']}{rel(rel_b)})")
    floor = ""
    if "can_reach_alpha" in row and not bool(row["can_reach_alpha"]):
        floor = f"; this design cannot reach significance (smallest possible p {float(row['min_p']):.2g})"
    horizon = float(row.get("horizon", math.nan))  # type: ignore[arg-type]
    ranked = (f"; {int(row['n_ranked'])} of {n_arm + n_ref} runs ranked by time, up to {horizon:,.0f}"
              if math.isfinite(horizon) and "n_ranked" in row else "")
    return f"{label}: {effect}, {p} ({row['test']}{ranked}, {corr}), {crossed}{floor}."


def _effect_short(ratio: float, bound: float, kind: str) -> str | None:
    if ratio == 1:
        return "the same median time"
    if math.isfinite(ratio) and ratio > 0:
        return f"{fmt_times(1 / ratio)}× sooner" if ratio <= 1 else f"{fmt_times(ratio)}× later"
    if kind == "at most" and math.isfinite(bound) and 0 < bound < 1:
        return f"at least {fmt_times(1 / bound)}× sooner"
    if kind == "at least" and math.isfinite(bound) and bound > 1:
        return f"at least {fmt_times(bound)}× later"
    return None


def robustness_sentence(arm: str, reference: str, rows: Sequence[Mapping[str, object]],
                        failures: Mapping[str, str] | None = None) -> str:
    """How the arm-vs-reference effect reads under the other estimators, with the runs each one used.

    Only estimators that could time both arms (at least 2 runs each, a defined
    ratio or bound) enter the comparison; the others are named with the reason.

    Args:
        arm, reference: the compared arms.
        rows: stats.csv rows of this comparison, one per estimator.
        failures: estimator -> why some runs have no time (e.g. "onset before the first evaluation in 3 runs").

    Example:
        >>> rows = [dict(estimator="steepest", ratio=0.12, ratio_bound=float("nan"), ratio_bound_kind="", n_arm=3, n_reference=3),
        ...         dict(estimator="sigmoid_mid", ratio=float("nan"), ratio_bound=float("nan"), ratio_bound_kind="", n_arm=0,
        ...              n_reference=3)]
        >>> robustness_sentence("match", "control", rows, {"sigmoid_mid": "bad fit in 3 runs"})
        'match vs control under other estimators: steepest 8.3× sooner (3 vs 3 runs); not usable: sigmoid_mid (bad fit in 3 runs).'
    """
    failures = failures or {}
    used, unusable = [], []
    for r in rows:
        est = str(r["estimator"])
        if est == "threshold":
            continue
        n_a, n_b = int(r["n_arm"]), int(r["n_reference"])  # type: ignore[call-overload]
        effect = None if min(n_a, n_b) < MIN_RUNS else _effect_short(
            float(r["ratio"]), float(r["ratio_bound"]), str(r["ratio_bound_kind"] or ""))  # type: ignore[arg-type]
        if effect is None:
            why = failures.get(est) or (f"{n_a} vs {n_b} runs timed" if min(n_a, n_b) < MIN_RUNS
                                        else "median ratio undefined")
            unusable.append(f"{est} ({why})")
        else:
            used.append(f"{est} {effect} ({n_a} vs {n_b} runs)")
    text = f"{arm} vs {reference} under other estimators: {', '.join(used) if used else 'none usable'}"
    if unusable:
        text += f"; not usable: {', '.join(unusable)}"
    return text + "."


def rule_sentence(rule: PhaseRule) -> str:
    """How the phase-change time is defined, in words.

    Example:
        >>> rule_sentence(PhaseRule(persist=1500))
        'Phase-change time: the first evaluation at which train/loss falls below 0.277 (sequences seen) and stays below it for 1,500 sequences (decided then: a relapse after that does not undo it); a run without one is right-censored at its last evaluation minus 1,500.'
    """
    verb = "falls below" if rule.direction == "below" else "rises above"
    side = "below" if rule.direction == "below" else "above"
    where = ", counting only evaluations outside the run's intervention windows (fixed and triggered)" \
        if rule.outside_windows else ""
    head = f"Phase-change time: the first evaluation at which {rule.metric} {verb} {rule.threshold:.3g} (sequences seen)"
    if rule.persist == "end":
        return (f"{head} and stays {side} it to the end of the run{where}; a run that never does, or goes back, is "
                "right-censored at its last evaluation.")
    W = rule.span
    if W:
        lasting = f" and stays {side} it for {W:,} sequences (decided then: a relapse after that does not undo it)"
    else:
        lasting = " (a relapse afterwards does not undo it)"
    timed = f"; timed from {rule.relative_to}" if rule.relative_to else ""
    return (f"{head}{lasting}{where}{timed}; a run without one is right-censored at its last evaluation"
            + (f" minus {W:,}." if W else "."))


def always_on_note(rule: PhaseRule, always_on: Mapping[str, Sequence[str]]) -> str:
    """For a rule that steps outside windows: which interventions are on for the whole run (configuration, not windows).

    Example:
        >>> always_on_note(PhaseRule(outside_windows=True), {"match": ["knockout_L1_v_keep0", "induction_L1H0"]})
        'Interventions on for the whole run are part of their arm, not windows to step outside of: match (knockout_L1_v_keep0, induction_L1H0).'
    """
    if not rule.outside_windows or not any(always_on.values()):
        return ""
    arms = "; ".join(f"{arm} ({', '.join(names)})" for arm, names in always_on.items() if names)
    return f"Interventions on for the whole run are part of their arm, not windows to step outside of: {arms}."


def markdown(title: str, sections: Sequence[tuple[PhaseRule, Sequence[str], Sequence[str]]],
             factorial: Sequence[str], warnings: Sequence[str], method_notes: Sequence[str],
             always_on: Mapping[str, Sequence[str]] | None = None) -> str:
    """Assemble stats.md (embedded verbatim in the study's index page).

    ``sections``: one ``(rule, sentences, robustness)`` per phase rule, the primary first; rules are never pooled.
    """
    lines = [f"### Phase-change statistics: {title}", ""]
    for k, (rule, sentences, robustness) in enumerate(sections):
        if len(sections) > 1:
            lines += [f"#### {'Primary' if k == 0 else 'Secondary'} rule: {rule.describe()}", ""]
        note = always_on_note(rule, always_on or {})
        lines += [rule_sentence(rule) + (f" {note}" if note else ""), ""]
        lines += [f"- {s}" for s in sentences] or ["- No comparisons (the study names no control and no pairs)."]
        if robustness:
            lines += ["", "Robustness (same comparisons, other phase-change estimators):", ""]
            lines += [f"- {s}" for s in robustness]
        lines += [""]
    lines = lines[:-1]
    if factorial:
        lines += ["", "Factorial effects on log phase-change time (primary rule; ratios are time multipliers; "
                  "below 1 = sooner):", ""]
        lines += [f"- {s}" for s in factorial]
    if warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in warnings]
    if method_notes:
        lines += ["", "Methods:", ""] + [f"- {m}" for m in method_notes]
    return "\n".join(lines) + "\n"
