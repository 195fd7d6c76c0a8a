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


def ci_words(low: float, high: float, level: float, *, n_arm: int = 0, n_reference: int = 0,
             nominal: float | None = None) -> str:
    """An interval of a time ratio in speed words (×), an unbounded side written out, the level when below nominal.

    ``low``/``high`` are time ratios (below 1: sooner); the words read as factors sooner when the interval
    lies below 1, later when above, and as the two ratios when it straddles 1.

    Example:
        >>> ci_words(0.045, 0.077, 0.95)
        '95 % CI 13–22× sooner'
        >>> ci_words(0.0, 0.049, 0.95)
        '95 % CI 20× sooner to unbounded'
        >>> ci_words(0.0, float("inf"), 0.9)
        '90 % CI: no ratio excluded'
        >>> ci_words(0.3, 1.4, 0.9, n_arm=3, n_reference=3, nominal=0.95)
        '90 % CI of the time ratio 0.3–1.4; 90 % is the highest level an exact interval reaches with 3 vs 3 runs'
    """
    if not (math.isfinite(low) or math.isfinite(high)) or (math.isnan(low) or math.isnan(high)):
        return ""
    head = f"{level * 100:.4g} % CI"
    if low == 0 and math.isinf(high):
        txt = f"{head}: no ratio excluded"
    elif high <= 1:
        lo_s = fmt_times(1 / high) if high > 0 else "∞"
        txt = f"{head} {lo_s}× sooner to unbounded" if low == 0 else f"{head} {lo_s}–{fmt_times(1 / low)}× sooner"
    elif low >= 1:
        txt = f"{head} {fmt_times(low)}× later to unbounded" if math.isinf(high) else \
            f"{head} {fmt_times(low)}–{fmt_times(high)}× later"
    else:
        lo = "unbounded" if low == 0 else f"{low:.2g}"
        hi = "unbounded" if math.isinf(high) else f"{high:.2g}"
        txt = f"{head} of the time ratio {lo}–{hi}"
    if nominal is not None and level < nominal - 1e-9:
        txt += f"; {level * 100:.4g} % is the highest level an exact interval reaches with {n_arm} vs {n_reference} runs"
    return txt


def effect_words(row: Mapping[str, object], reference: str, *, short: bool = False) -> str:
    """The time ratio of a stats.csv row in words, with its interval (or the bound the data support).

    ``short``: for a table cell (the level is given, its explanation left to the sentence).
    """
    ratio, low, high = float(row["ratio"]), float(row["ratio_low"]), float(row["ratio_high"])  # type: ignore[arg-type]
    level = float(row.get("ratio_level", row.get("confidence", 0.95)))  # type: ignore[arg-type]
    nominal = float(row.get("confidence", level))  # type: ignore[arg-type]
    ci = ci_words(low, high, level, n_arm=int(row["n_arm"]), n_reference=int(row["n_reference"]),  # type: ignore[call-overload]
                  nominal=None if short else nominal)
    arm = str(row.get("arm", "the arm"))
    if math.isfinite(ratio):
        if abs(ratio - 1) < 1e-12:
            effect = f"phase change at the same time as {reference} (time ratio 1)"
        elif ratio < 1:
            effect = f"phase change {fmt_times(1 / ratio)}× sooner than {reference}"
        else:
            effect = f"phase change {fmt_times(ratio)}× later than {reference}"
        return effect + (f" ({ci})" if ci else "")
    bound, kind = float(row.get("ratio_bound", math.nan)), str(row.get("ratio_bound_kind") or "")  # type: ignore[arg-type]
    if kind == "at most" and math.isfinite(bound) and 0 < bound < 1:
        return f"phase change at least {fmt_times(1 / bound)}× sooner than {reference} ({reference}'s runs did not cross" \
               + (f"; {ci})" if ci else ")")
    if kind == "at least" and math.isfinite(bound) and bound > 1:
        return f"phase change at least {fmt_times(bound)}× later than {reference} ({arm}'s runs did not cross" \
               + (f"; {ci})" if ci else ")")
    why = str(row.get("ratio_note") or "no ratio could be estimated").removeprefix("not estimable: ")
    return f"time ratio not estimable ({why})"


def p_words(row: Mapping[str, object]) -> str:
    """The adjusted p with its test and family, e.g. ``p = 0.040 (Gehan (exact), Holm over the primary family of 5)``."""
    from clamp.analysis.stats.families import family_label

    fam = family_label(str(row.get("family", "primary")), str(row.get("correction", "holm")),
                       int(row.get("family_size", 0) or 0))  # type: ignore[call-overload]
    return f"{fmt_p(float(row['p_adjusted']))} ({row['test']}, {fam})"  # type: ignore[arg-type]


def floor_words(row: Mapping[str, object], alpha: float = 0.05) -> str:
    """Why a comparison cannot reach significance whatever the data, naming the real limit ("" when it can).

    Example:
        >>> floor_words(dict(can_reach_alpha=False, min_p=0.0079, reachable_p=0.071, family_size=9, correction="holm",
        ...                  family="primary", n_arm=5, n_reference=5))
        'cannot reach significance: its smallest adjusted p is 0.071 (Holm over a family of 9, each p at least 0.0079)'
        >>> floor_words(dict(can_reach_alpha=False, min_p=0.1, reachable_p=0.3, family_size=3, correction="holm",
        ...                  family="primary", n_arm=3, n_reference=3))
        'cannot reach significance: with 3 vs 3 runs the smallest p an exact test gives is 0.1'
    """
    if "can_reach_alpha" not in row or bool(row["can_reach_alpha"]) or not int(row.get("family_size", 0) or 0):  # type: ignore[call-overload]
        return ""
    min_p, best = float(row["min_p"]), float(row.get("reachable_p", math.nan))  # type: ignore[arg-type]
    if min_p > alpha:
        return (f"cannot reach significance: with {row['n_arm']} vs {row['n_reference']} runs the smallest p an exact "
                f"test gives is {min_p:.2g}")
    from clamp.corrections import CORRECTION_NAMES

    corr = CORRECTION_NAMES.get(str(row.get("correction")), str(row.get("correction")))
    return (f"cannot reach significance: its smallest adjusted p is {best:.2g} ({corr} over a family of "
            f"{int(row['family_size'])}, each p at least {min_p:.2g})")  # type: ignore[call-overload]


def comparison_sentence(row: Mapping[str, object], *, control: str | None = None, alpha: float = 0.05) -> str:
    """One line such as ``match: phase change 18× sooner than control (95 % CI 13–22× sooner), p = 0.040 (…), 5/5 runs crossed``.

    Args:
        row: a row of stats.csv (a dict or a pandas row).
        control: the study's control arm; comparisons against another reference are labelled "arm vs reference".
        alpha: the level the floor words are judged against.

    Example:
        >>> row = dict(arm="match", reference="control", ratio=0.11, ratio_low=0.077, ratio_high=0.16, ratio_level=0.95,
        ...            ratio_bound=float("nan"), ratio_bound_kind="", confidence=0.95, p_adjusted=0.0397,
        ...            test="Gehan (exact)", family="primary", correction="holm", family_size=5, crossed_arm=5, n_arm=5,
        ...            crossed_reference=5, n_reference=5)
        >>> comparison_sentence(row)
        'match: phase change 9.1× sooner than control (95 % CI 6.2–13× sooner), p = 0.040 (Gehan (exact), Holm over the primary family of 5), 5/5 runs crossed (control 5/5).'
        >>> comparison_sentence({**row, "n_arm": 1, "n_reference": 1})
        'match: not compared with control: a comparison needs at least 2 runs per arm (has 1 vs 1).'
        >>> comparison_sentence({**row, "n_arm": 5, "n_reference": 0, "excluded_note": "5 runs whose reference event never happened"})
        'match: not compared with control: a comparison needs at least 2 runs per arm (has 5 vs 0; left out: 5 runs whose reference event never happened).'
    """
    arm, ref = str(row["arm"]), str(row["reference"])
    label = arm if control is None or ref == control else f"{arm} vs {ref}"
    n_arm, n_ref = int(row["n_arm"]), int(row["n_reference"])  # type: ignore[call-overload]
    if min(n_arm, n_ref) < MIN_RUNS:  # with the reason runs were left out, when some were (relative_to)
        why = str(row.get("excluded_note") or "")
        return (f"{label}: not compared with {ref}: a comparison needs at least {MIN_RUNS} runs per arm "
                f"(has {n_arm} vs {n_ref}" + (f"; left out: {why}" if why else "") + ").")
    def rel(side: str) -> str:  # relapses after a phase change; crossings that never lasted the span
        n, u = int(row.get(f"relapsed_{side}", 0) or 0), int(row.get(f"unconfirmed_{side}", 0) or 0)  # type: ignore[call-overload]
        return (f", {n} relapsed after it" if n else "") + (f", {u} crossed without staying" if u else "")

    crossed = (f"{row['crossed_arm']}/{row['n_arm']} runs crossed{rel('arm')} "
               f"({ref} {row['crossed_reference']}/{row['n_reference']}{rel('reference')})")
    horizon = float(row.get("horizon", math.nan))  # type: ignore[arg-type]
    ranked = (f"; {int(row['n_ranked'])} of {n_arm + n_ref} runs ranked by time, up to {horizon:,.0f}"  # type: ignore[call-overload]
              if math.isfinite(horizon) and "n_ranked" in row else "")
    p = p_words(row)
    p = p[:-1] + ranked + ")" if ranked else p
    extra = [w for w in (floor_words(row, alpha), str(row.get("excluded_note") or "")) if w]
    if row.get("excluded_note"):
        extra[-1] = f"left out: {extra[-1]}"
    return f"{label}: {effect_words(row, ref)}, {p}, {crossed}" + "".join(f"; {w}" for w in extra) + "."


def _effect_short(ratio: float, bound: float, kind: str) -> str | None:
    if math.isfinite(ratio) and abs(ratio - 1) < 1e-12:
        return "the same time"
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

    Only estimators that could time both arms (at least 2 runs each, a defined ratio or bound) and
    did not lose an arm's fastest or slowest crossed run (``usable``) enter the comparison; the
    others are named with the reason and the runs they lost (with their threshold times).

    Args:
        arm, reference: the compared arms.
        rows: stats.csv rows of this comparison, one per estimator.
        failures: estimator -> why some runs have no time (e.g. "onset before the first evaluation in 3 runs").

    Example:
        >>> rows = [dict(estimator="steepest", ratio=0.12, ratio_bound=float("nan"), ratio_bound_kind="", n_arm=3, n_reference=3),
        ...         dict(estimator="sigmoid_mid", ratio=0.2, ratio_bound=float("nan"), ratio_bound_kind="", n_arm=2,
        ...              n_reference=3, usable=False,
        ...              lost_summary="cannot time 1 of 3 match runs, its fastest (seed1, 20,000) among them")]
        >>> robustness_sentence("match", "control", rows)
        'match vs control under other estimators: steepest 8.3× sooner (3 vs 3 runs); not usable: sigmoid_mid (cannot time 1 of 3 match runs, its fastest (seed1, 20,000) among them; stats.csv `lost_runs` says why).'
    """
    failures = failures or {}
    used, unusable = [], []
    for r in rows:
        est = str(r["estimator"])
        if est == "threshold":
            continue
        n_a, n_b = int(r["n_arm"]), int(r["n_reference"])  # type: ignore[call-overload]
        lost = str(r.get("lost_summary") or r.get("lost_runs") or "")
        if not bool(r.get("usable", True)):
            unusable.append(f"{est} ({lost}; stats.csv `lost_runs` says why)")
            continue
        effect = None if min(n_a, n_b) < MIN_RUNS else _effect_short(
            float(r["ratio"]), float(r["ratio_bound"]), str(r["ratio_bound_kind"] or ""))  # type: ignore[arg-type]
        if effect is None:
            why = failures.get(est) or (f"{n_a} vs {n_b} runs timed" if min(n_a, n_b) < MIN_RUNS
                                        else "time ratio undefined")
            unusable.append(f"{est} ({why})")
        else:
            used.append(f"{est} {effect} ({n_a} vs {n_b} runs" + (f"; {lost}" if lost else "") + ")")
    text = f"{arm} vs {reference} under other estimators: {', '.join(used) if used else 'none usable'}"
    if unusable:
        text += f"; not usable: {', '.join(unusable)}"
    return text + "."


def fmt_seen(v: float) -> str:
    """Sequences seen for a table cell: ``882,000``; ``not reached`` for an infinite median.

    Example:
        >>> fmt_seen(882000.0), fmt_seen(float("inf")), fmt_seen(float("nan"))
        ('882,000', 'not reached', '—')
    """
    if math.isnan(v):
        return "—"
    return "not reached" if math.isinf(v) else f"{v:,.0f}"


TABLE_COLUMNS = ("comparison", "runs crossed", "median phase time (sequences)", "time ratio (CI)", "p (test, family)")


def headline_table(rows: Sequence[Mapping[str, object]], *, control: str | None = None) -> list[dict[str, str]]:
    """The compact table a reader sees first: one row per comparison of the headline rule and estimator.

    Example:
        >>> row = dict(arm="match", reference="control", ratio=0.055, ratio_low=0.045, ratio_high=0.077, ratio_level=0.95,
        ...            confidence=0.95, ratio_bound=float("nan"), ratio_bound_kind="", p_adjusted=0.0397, family="primary",
        ...            correction="holm", family_size=5, crossed_arm=5, n_arm=5, crossed_reference=5, n_reference=5,
        ...            median_arm=50000.0, median_reference=882000.0, test="Gehan (exact)")
        >>> headline_table([row], control="control")[0]["time ratio (CI)"]
        '18× sooner (95 % CI 13–22× sooner)'
    """
    from clamp.analysis.stats.families import family_label

    out = []
    for r in rows:
        arm, ref = str(r["arm"]), str(r["reference"])
        n_a, n_r = int(r["n_arm"]), int(r["n_reference"])  # type: ignore[call-overload]
        cells = {"comparison": arm if ref == control else f"{arm} vs {ref}",
                 "runs crossed": f"{r['crossed_arm']}/{n_a} vs {r['crossed_reference']}/{n_r}"}
        if min(n_a, n_r) < MIN_RUNS:
            cells.update({"median phase time (sequences)": "—", "time ratio (CI)": "not compared (too few runs)",
                          "p (test, family)": "—"})
            out.append(cells)
            continue
        cells["median phase time (sequences)"] = (f"{fmt_seen(float(r['median_arm']))} vs "  # type: ignore[arg-type]
                                                  f"{fmt_seen(float(r['median_reference']))}")  # type: ignore[arg-type]
        words = effect_words(r, ref, short=True)
        cells["time ratio (CI)"] = (words.replace("phase change ", "").replace(f" than {ref}", "")
                                    .replace("'s runs did not cross", " did not cross"))
        fam = family_label(str(r.get("family", "primary")), str(r.get("correction", "holm")),
                           int(r.get("family_size", 0) or 0))  # type: ignore[call-overload]
        cells["p (test, family)"] = f"{fmt_p(float(r['p_adjusted'])).removeprefix('p = ')} ({fam})"  # type: ignore[arg-type]
        out.append(cells)
    return out


def table_markdown(table: Sequence[Mapping[str, str]]) -> list[str]:
    """A :func:`headline_table` as markdown lines."""
    if not table:
        return []
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    return lines + ["| " + " | ".join(row[c] for c in TABLE_COLUMNS) + " |" for row in table]


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
             always_on: Mapping[str, Sequence[str]] | None = None,
             tables: Sequence[Sequence[Mapping[str, str]]] = ()) -> str:
    """Assemble stats.md (embedded in the study's index page, whose first screen shows the first table and the warnings).

    ``sections``: one ``(rule, sentences, robustness)`` per phase rule, the primary first; rules are never pooled.
    ``tables``: each rule's :func:`headline_table`, shown above its sentences.
    """
    lines = [f"### Phase-change statistics: {title}", ""]
    for k, (rule, sentences, robustness) in enumerate(sections):
        if len(sections) > 1:
            lines += [f"#### {'Primary' if k == 0 else 'Secondary'} rule: {rule.describe()}", ""]
        note = always_on_note(rule, always_on or {})
        lines += [rule_sentence(rule) + (f" {note}" if note else ""), ""]
        if k < len(tables) and tables[k]:
            lines += table_markdown(tables[k]) + [""]
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
