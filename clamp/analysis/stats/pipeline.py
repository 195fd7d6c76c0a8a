"""The statistics of one study, end to end: stored metrics in, tables, figures and sentences out.

Why this file exists: ``clamp stats results/<study>`` and the end of ``clamp
run`` must produce the same numbers from the same stored metrics.  This file
wires the pure pieces together — phase times per run (:mod:`.runs`),
comparisons (:mod:`.compare`), factorial effects (:mod:`.factorial`), figures
(:mod:`.plots`), sentences (:mod:`.sentences`) and warnings (:mod:`.caveats`)
— and writes (into the study folder, or ``stats_<rule>/`` for another rule)::

    phase_times.csv  one row per run × phase rule × estimator, with censoring, relapse and status
    stats.csv        one row per comparison × phase rule × estimator (``primary`` marks the headline family)
    factorial.csv    main effects and interactions (factorial studies only)
    stats.md         one plain sentence per comparison and rule, plus warnings and method notes
    plots/stats_*    phase_times, km (when any run is censored), estimators; PNG and SVG
                     (a secondary rule's figures get a ``__<rule slug>`` suffix)

Rules are never pooled: every row carries ``rule_index`` (0 = primary) and each
rule gets its own comparisons, sentences and figures, even two rules on one metric.

Multiple-comparison correction is applied within each (rule, estimator)
family, across that family's comparisons.  All resampling is seeded, so the
same metrics give the same numbers.

A comparison in which either arm has fewer than 2 included runs (e.g. a
one-seed smoke run) still gets its stats.csv rows, with NaN estimates and
p-values, a note, and no place in any correction family (``family_size`` 0);
stats.md says it needs at least 2 runs per arm.  Factorial fits with too few
runs likewise give NaN rows with a note (:func:`clamp.analysis.stats.factorial.factorial_effects`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from clamp.errors import ConfigError
from clamp.names import did_you_mean
from clamp.analysis.stats.caveats import study_warnings, task_rule_warnings
from clamp.analysis.stats.compare import compare_samples, too_few_runs
from clamp.analysis.stats.families import is_scan, reachable
from clamp.corrections import Correction, adjust_pvalues, check_correction
from clamp.analysis.stats.factorial import Effect, additivity, factorial_effects, not_estimable
from clamp.analysis.stats.phase import ESTIMATORS, smoothing_window
from clamp.phase import PhaseRule
from clamp.analysis.stats.runs import StudySpec, load_runs, phase_table, read_study_spec, recorded_metrics
from clamp.analysis.stats.sentences import (comparison_sentence, fmt_p, headline_table, markdown,
                                            robustness_sentence)


@dataclass(frozen=True, kw_only=True)
class StudyStats:
    """What :func:`compute_statistics` computed and wrote."""

    study: StudySpec
    phase_times: pd.DataFrame
    stats: pd.DataFrame
    factorial: pd.DataFrame | None
    sentences: tuple[str, ...]
    warnings: tuple[str, ...]
    markdown: str
    outputs: tuple[Path, ...]


STATS_COLUMNS: tuple[str, ...] = (
    "rule_index", "rule", "metric", "estimator", "headline", "family", "arm", "reference", "n_arm", "n_reference",
    "crossed_arm", "crossed_reference", "censored_arm", "censored_reference", "relapsed_arm", "relapsed_reference",
    "unconfirmed_arm", "unconfirmed_reference",
    "n_excluded", "excluded_note", "median_arm", "median_reference", "median_ratio", "ratio", "ratio_low",
    "ratio_high", "ratio_level", "ratio_method", "ratio_note", "ratio_bound", "ratio_bound_kind", "usable",
    "lost_summary", "lost_runs", "difference", "rmst_tau", "rmst_difference", "rmst_low", "rmst_high", "test", "p", "p_adjusted",
    "correction", "significant", "family_size", "min_p", "reachable_p", "can_reach_alpha", "p_rank", "rank_method",
    "horizon", "n_ranked", "p_logrank", "n_pairs", "paired_ratio", "paired_ratio_low", "paired_ratio_high",
    "paired_level", "paired_test", "paired_p", "paired_min_p", "confidence", "note",
)


def compare_arms(phase_times: pd.DataFrame, spec: StudySpec, *, n_boot: int = 4000, confidence: float = 0.95,
                 correction: Correction | None = None, alpha: float = 0.05, seed: int = 0,
                 estimators: tuple[str, ...] = ESTIMATORS) -> pd.DataFrame:
    """One row per (rule, estimator, comparison) with the time ratio and its interval, tests and adjusted p.

    Only ``included`` runs enter; paired analysis uses the seeds both arms share.  Each comparison
    belongs to one family (:meth:`StudySpec.family`: primary, secondary or one scan's), corrected on
    its own within each (rule, estimator).  A comparison with fewer than 2 included runs in either
    arm gets a row with NaN estimates and p-values, a note, ``family_size`` 0, and is left out of
    its family's correction.  An estimator other than the threshold that cannot time some of the
    comparison's crossed runs names them in ``lost_runs``; when those include an arm's fastest or
    slowest run it is ``usable`` False for that comparison (its ratio would be biased), and left out
    of the robustness sentences.

    Args:
        phase_times: the table from :func:`clamp.analysis.stats.runs.phase_table`.
        spec: the study (its rules, pairs and families).
        n_boot: bootstrap resamples (the RMST interval).
        confidence: nominal CI level.
        correction: the correction within each family (default: the study's, else Holm).
        alpha: significance level for ``significant`` and ``can_reach_alpha``.
        seed: seeds every bootstrap and permutation.
        estimators: which estimators to compare (the threshold rule is the headline one).

    Returns:
        The stats table (empty, with its columns, when the study has no pairs).
    """
    correction = correction or spec.correction
    rows = []
    for k, rule in enumerate(spec.rules):
        threshold = phase_times[(phase_times["rule_index"] == k) & (phase_times["estimator"] == "threshold")]
        for est in estimators:
            sel = phase_times[(phase_times["rule_index"] == k) & (phase_times["estimator"] == est)]
            family_rows: dict[str, list[dict]] = {}
            for arm, ref in spec.pairs():
                a = sel[(sel["arm"] == arm) & sel["included"]]
                b = sel[(sel["arm"] == ref) & sel["included"]]
                pairs = [(i, j) for i, s in enumerate(a["seed"]) for j, t in enumerate(b["seed"]) if s == t]
                both = sel[(sel["arm"] == arm) | (sel["arm"] == ref)]
                missing = int(len(both) - len(a) - len(b))
                horizon = design_horizon(spec, arm, ref, rule)
                c = compare_samples(a["time"], a["event"], b["time"], b["event"], arm=arm, reference=ref,
                                    pairs=pairs, n_boot=n_boot, confidence=confidence, seed=seed,
                                    a_limits=run_limits(a, horizon, rule), b_limits=run_limits(b, horizon, rule),
                                    a_follow=run_limits(a, follow_up(spec, arm, rule), rule),
                                    b_follow=run_limits(b, follow_up(spec, ref, rule), rule))
                d = c.to_dict()
                lost, usable, lost_words = lost_runs(threshold, sel, arm, ref) if est != "threshold" else ("", True, "")
                d.update(lost_summary=lost_words, rule_index=k, rule=rule.describe(), metric=rule.metric, estimator=est,
                         headline=(k == 0 and est == "threshold"), family=spec.family(arm, ref), n_excluded=missing,
                         excluded_note=excluded_note(both), usable=usable, lost_runs=lost,
                         relapsed_arm=int((a["relapsed"] & a["event"].astype(bool)).sum()),
                         relapsed_reference=int((b["relapsed"] & b["event"].astype(bool)).sum()),
                         unconfirmed_arm=int((a["relapsed"] & ~a["event"].astype(bool)).sum()),
                         unconfirmed_reference=int((b["relapsed"] & ~b["event"].astype(bool)).sum()))
                family_rows.setdefault(d["family"], []).append(d)
            for family in family_rows.values():
                correct_family(family, correction, alpha)
                rows += family
    return pd.DataFrame(rows, columns=list(STATS_COLUMNS))


def correct_family(family: list[dict], correction: Correction, alpha: float) -> None:
    """Adjust the p-values of one family's rows in place: ``p_adjusted``, ``significant``, ``family_size``,
    ``reachable_p`` (the smallest adjusted p the comparison can reach with these runs) and ``can_reach_alpha``.

    Rows with too few runs, and estimators not usable for their comparison, are left out of the family.
    """
    tested = [d for d in family if not too_few_runs(d["n_arm"], d["n_reference"]) and d["usable"]]
    for d in family:
        d.update(p_adjusted=float("nan"), correction=correction, significant=False, family_size=0,
                 reachable_p=float("nan"), can_reach_alpha=False)
    if not tested:
        return
    adj = adjust_pvalues([d["p"] for d in tested], correction)
    best = reachable([d["min_p"] for d in tested], correction)
    for d, p, r in zip(tested, adj, best):
        d.update(p_adjusted=float(p), significant=bool(p < alpha), family_size=len(tested), reachable_p=float(r),
                 can_reach_alpha=bool(r <= alpha))


def lost_runs(threshold: pd.DataFrame, sel: pd.DataFrame, arm: str, ref: str) -> tuple[str, bool, str]:
    """The crossed runs of a comparison an estimator could not time: every one in words with its threshold time
    and reason, whether the estimator stays usable (False when it lost an arm's fastest or slowest crossed
    run), and a short summary for the sentences.

    Example:
        >>> th = pd.DataFrame({"arm": "a", "seed": [0, 1, 2], "time": [10.0, 20.0, 30.0], "event": True, "included": True})
        >>> est = th.assign(time=[float("nan"), 21.0, 29.0], note=["onset before the first evaluation", "", ""])
        >>> lost_runs(th, est, "a", "b")
        ('a/seed0 (threshold 10, onset before the first evaluation)', False, 'cannot time 1 of 3 a runs, its fastest (seed0, 10) among them')
    """
    lost, usable, summary = [], True, []
    for name in (arm, ref):
        th = threshold[(threshold["arm"] == name) & threshold["included"] & threshold["event"].astype(bool)]
        if th.empty:
            continue
        mine = sel[(sel["arm"] == name)].set_index("seed")
        fastest, slowest = th.loc[th["time"].idxmin()], th.loc[th["time"].idxmax()]
        gone = []
        for r in th.itertuples():
            if r.seed in mine.index and pd.isna(mine.loc[r.seed, "time"]):
                why = str(mine.loc[r.seed, "note"]) if "note" in mine and pd.notna(mine.loc[r.seed, "note"]) else ""
                lost.append(f"{name}/seed{r.seed} (threshold {r.time:,.0f}" + (f", {why}" if why else "") + ")")
                gone.append(r.seed)
        if not gone:
            continue
        ends = [f"its {which} (seed{int(r['seed'])}, {r['time']:,.0f})" for which, r in
                (("fastest", fastest), ("slowest", slowest)) if int(r["seed"]) in gone and len(th) > 1]
        if ends:
            usable = False
        if len(gone) == len(th):
            summary.append(f"cannot time any of the {len(th)} {name} runs")
        else:
            summary.append(f"cannot time {len(gone)} of {len(th)} {name} runs"
                           + (f", {' and '.join(ends)} among them" if ends else ""))
    return "; ".join(lost), usable, "; ".join(summary)


def excluded_note(rows: pd.DataFrame) -> str:
    """Why runs of a comparison were left out, counted by reason (``relative_to`` exclusions, unfinished runs).

    Example:
        >>> excluded_note(pd.DataFrame({"included": [True, False, False], "status": "finished",
        ...                             "reference": ["happened", "never happened", "phase change before it"]}))
        '1 run whose reference event never happened; 1 run whose phase change came before its reference event'
    """
    out = rows[~rows["included"].astype(bool)]
    if out.empty:
        return ""
    words = {"never happened": "whose reference event never happened",
             "phase change before it": "whose phase change came before its reference event"}
    reasons = []
    for r in out.itertuples():
        status = getattr(r, "status", "finished")
        ref = getattr(r, "reference", None)
        reasons.append(f"that did not finish ({status})" if status != "finished"
                       else words.get(str(ref), "without a phase time") if isinstance(ref, str) else "without a phase time")
    counts: dict[str, int] = {}
    for why in reasons:
        counts[why] = counts.get(why, 0) + 1
    return "; ".join(f"{n} run{'s' if n > 1 else ''} {why}" for why, n in counts.items())


def design_horizon(spec: StudySpec, arm: str, reference: str, rule: PhaseRule) -> float:
    """The administrative horizon of a comparison: the planned budget both arms reach, minus the rule's span W.

    It comes from the design (the arms' budgets in ``study.json``), never from a run's early stop
    or a late trigger; infinite when ``study.json`` records no budget (then no run is cut).

    Example:
        >>> s = StudySpec.from_dict({"name": "s", "seeds": [0], "control": "c", "n_sequences": 100_000, "eval_every": 1000,
        ...                          "arms": [{"name": "c", "n_sequences": 300_000}, {"name": "a"}]})
        >>> design_horizon(s, "a", "c", s.rules[0])
        97000.0
    """
    budgets = [b.budget for b in (spec.arm_spec(arm), spec.arm_spec(reference)) if b is not None and b.budget]
    if len(budgets) < 2:
        return float("inf")
    return float(min(budgets) - rule.span)


def follow_up(spec: StudySpec, arm: str, rule: PhaseRule) -> float:
    """How far an arm's runs were planned to be followed: its own budget minus the rule's span (inf if unknown)."""
    b = spec.arm_spec(arm)
    return float(b.budget - rule.span) if b is not None and b.budget else float("inf")


def run_limits(rows: pd.DataFrame, horizon: float, rule: PhaseRule) -> "pd.Series | float":
    """Each run's horizon: the comparison's, or, timed from a reference event (``relative_to``), minus the run's
    reference time (the budget is in absolute sequences)."""
    if rule.relative_to and "reference_time" in rows:
        return (horizon - rows["reference_time"].astype(float)).to_numpy()
    return horizon


def factorial_table(phase_times: pd.DataFrame, spec: StudySpec, *, confidence: float = 0.95) -> pd.DataFrame | None:
    """Factorial effects on the primary rule's threshold times of included runs (None if not factorial)."""
    if not spec.factorial:
        return None
    levels = {a.name: a.factors for a in spec.arms if a.factors}
    sel = phase_times[(phase_times["rule_index"] == 0) & (phase_times["estimator"] == "threshold")
                      & phase_times["included"] & phase_times["arm"].isin(list(levels))]
    effects = factorial_effects(sel["time"].to_numpy(float), sel["event"].to_numpy(bool),
                                [levels[a] for a in sel["arm"]], confidence=confidence)
    if not effects:  # no included run at all: the factors come from the study
        effects = not_estimable(sorted(next(iter(levels.values()))), n=0, n_censored=0, note="no included runs")
    return pd.DataFrame([e.to_dict() for e in effects],
                        columns=["term", "order", "log_effect", "log_low", "log_high", "ratio", "ratio_low",
                                 "ratio_high", "p", "method", "n", "n_censored", "note"])


METHOD_NOTES = (
    "Time ratio (the effect, with its interval): the Hodges–Lehmann ratio of phase times, arm / reference, on log "
    "time, and the set of ratios the rank test does not reject, each run followed to its own planned budget "
    "(Gehan inversion; without censoring the exact Mann–Whitney interval). Its level is the nominal one when an "
    "exact test with these runs can reach it, else the highest there is (stated). Medians are Kaplan–Meier "
    "medians when an arm has censored runs (not reached = undefined, never invented), shown for description.",
    "Phase times are decidable: the first evaluation past the threshold that stays past it for the rule's span W "
    "(three evaluation intervals by default); a run without one is censored at its last evaluation minus W; a "
    "relapse after that does not undo the phase change (it is flagged). A run stopped after its phase change has "
    "the phase time it would have had trained to its budget.",
    "Primary test (p, significant, the sentences): a two-sided permutation test of the Gehan (generalised "
    "Wilcoxon) statistic, exact over every relabelling of the runs, on the runs cut at the comparison's horizon "
    "(the budget both arms were planned to reach, minus W: stats.csv `horizon`); a crossing after it counts as "
    "'not by the horizon', and pairs of runs whose order is unknown count 0. Without early censoring this is the "
    "exact Mann–Whitney test. The asymptotic log-rank p is a secondary column of stats.csv only.",
    "Families: the comparisons against the control (or those the study names in primary_comparisons) form the "
    "primary family, other pairs the secondary family, each scan its own; p-values are corrected within their "
    "family (stats.csv `family`, `correction`, `family_size`).",
    "Paired analysis over shared seeds (same initialisation and data): Wilcoxon signed-rank on log time ratios with "
    "the exact signed-rank interval, or a sign test when pairs contain censored runs; a secondary check in stats.csv.",
    "Other estimators time the drop from the curve's shape, blind to the threshold crossing: steepest descent of "
    "the curve smoothed over a window of sequences common to every run of the study, sigmoid midpoint and onset "
    "and a least-squares change point, fitted around the drop; an estimator that cannot time a run says why, "
    "and one that loses an arm's fastest or slowest run is not used for that comparison.",
)


def compute_statistics(study_dir: str | Path, *, alpha: float | None = None, quiet: bool = False,
                       n_boot: int = 4000, correction: Correction | None = None, seed: int = 0, plots: bool = True,
                       phase: Sequence[PhaseRule | str] | None = None, out: str | Path | None = None) -> StudyStats:
    """Recompute every statistic of a study from its stored metrics and write the outputs.

    Args:
        study_dir: ``results/<study>`` (holds study.json and runs/).
        alpha: significance level (default: the study's ``alpha``, else 0.05); CIs are at 1 − alpha.
        quiet: do not print the summary (warnings about the phase rule still go to stderr).
        n_boot: bootstrap resamples per comparison.
        correction: ``"holm"``, ``"bonferroni"``, ``"bh"`` or ``"none"``, within each family (default: the
            study's ``correction``, Holm unless it says otherwise).
        seed: seeds all resampling (same metrics → same numbers).
        plots: write the figures.
        phase: other phase rules (``PhaseRule`` or ``"METRIC<THRESHOLD"``; the first is primary) instead of the
            study's; the outputs then go to ``study_dir/stats_<rule>/`` and the study's own are left untouched.
        out: the output folder (default: ``study_dir``, or ``study_dir/stats_<rule>`` with ``phase``).

    Returns:
        A :class:`StudyStats` with the tables, sentences and written paths.

    Example:
        >>> import json, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "study.json").write_text(json.dumps({"name": "demo", "seeds": [0], "control": None,
        ...                                                "arms": [{"name": "a"}]}))
        >>> compute_statistics(d, quiet=True, plots=False).sentences
        ()
        >>> compute_statistics(d, quiet=True, plots=False, phase=["train/loss<0.1"]).outputs[0].parent.name
        'stats_train-loss_lt_0.1'
    """
    if correction is not None:
        check_correction(correction)
    if n_boot < 100:
        raise ConfigError(f"n_boot={n_boot} is too small for a bootstrap CI; use at least 100 (default 4000).")
    root = Path(study_dir)
    spec = read_study_spec(root)
    dest = root
    if phase is not None:
        rules = [r if isinstance(r, PhaseRule) else PhaseRule.parse(r) for r in phase]
        spec = spec.with_rules(rules)
        known = recorded_metrics(root)
        for r in rules:
            if known and r.metric not in known:
                raise ConfigError(f"phase rule {r.describe()!r}: no run recorded metric {r.metric!r}"
                                  f"{did_you_mean(r.metric, known)}; recorded metrics are {known}.")
        dest = root / ("stats_" + "__".join(r.slug() for r in rules))
    if out is not None:
        dest = Path(out)
    alpha = spec.alpha if alpha is None else float(alpha)
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha} must be between 0 and 1.")
    confidence = 1 - alpha
    correction = correction or spec.correction
    runs = load_runs(root, spec)
    table = phase_table(runs, spec.rules, arms={a.name: a for a in spec.arms}, stop_rule=spec.stop_rule,
                        window=smoothing_window(a.budget for a in spec.arms))
    stats_df = compare_arms(table, spec, n_boot=n_boot, confidence=confidence, correction=correction, alpha=alpha,
                            seed=seed)
    fact = factorial_table(table, spec, confidence=confidence)
    sections, sentences, tables = [], [], []
    for k, rule in enumerate(spec.rules):
        rows = stats_df[(stats_df["rule_index"] == k) & (stats_df["estimator"] == "threshold")
                        & ~stats_df["family"].map(is_scan)]  # a scan's components are ranked in their own section
        said = [comparison_sentence(r, control=spec.control, alpha=alpha) for _, r in rows.iterrows()]
        sentences += said if k == 0 else []
        tables.append(headline_table(rows.to_dict("records"), control=spec.control))
        sections.append((rule, said, _robustness(table, stats_df, k)))
    warns = study_warnings(spec, table, stats_df, alpha, correction)
    title = spec.name
    if phase is not None:
        title += (f" (recomputed under {'; '.join(r.describe() for r in spec.rules)}; the study's own statistics "
                  "are in its stats.md)")
    always_on = {a.name: [str(iv.get("name") or iv.get("kind")) for iv in a.interventions
                          if (iv.get("windows") or [{}]) == [{"start": 0, "stop": None}]] for a in spec.arms}
    md = markdown(title, sections, _factorial_lines(fact, confidence), warns, METHOD_NOTES, always_on=always_on,
                  tables=tables)

    dest.mkdir(parents=True, exist_ok=True)
    from clamp.analysis.stats.scan import scan_reports  # scans (clamp.scan): ranking over the scan, heatmap

    scan_md, scan_files = scan_reports(dest, stats_df, spec, plots=plots)
    md += scan_md
    outputs = [dest / "phase_times.csv", dest / "stats.csv", dest / "stats.md"]
    table.to_csv(outputs[0], index=False)
    stats_df.to_csv(outputs[1], index=False)
    outputs[2].write_text(md)
    if fact is not None:
        outputs.append(dest / "factorial.csv")
        fact.to_csv(outputs[-1], index=False)
    if plots:
        outputs += _write_plots(dest / "plots", table, spec)
    outputs += scan_files
    for w in task_rule_warnings(spec):
        print(f"clamp: warning: {w}", file=sys.stderr)
    if not quiet:
        print(md, end="")
        print(f"wrote {', '.join(str(p.relative_to(dest)) for p in outputs)} in {dest}")
    return StudyStats(study=spec, phase_times=table, stats=stats_df, factorial=fact, sentences=tuple(sentences),
                      warnings=tuple(warns), markdown=md, outputs=tuple(outputs))


def _robustness(table: pd.DataFrame, stats_df: pd.DataFrame, k: int) -> list[str]:
    """Robustness sentences of rule ``k``: estimators usable for both arms, with run counts and failure reasons."""
    out = []
    sel = stats_df[stats_df["rule_index"] == k]
    for (arm, ref), g in sel.groupby(["arm", "reference"], sort=False):
        head = g[g["estimator"] == "threshold"]
        if head.empty or too_few_runs(int(head["n_arm"].iloc[0]), int(head["n_reference"].iloc[0])) \
                or int(head["crossed_arm"].iloc[0] + head["crossed_reference"].iloc[0]) == 0:
            continue  # nothing to re-time
        failures = {}
        for est in g["estimator"]:
            runs = table[(table["rule_index"] == k) & (table["estimator"] == est) & table["arm"].isin([arm, ref])
                         & (table["status"] == "finished") & table["time"].isna() & table["note"].fillna("").ne("")]
            if len(runs):
                counts = runs["note"].str.replace(r" \(.*", "", regex=True).value_counts()
                failures[est] = "; ".join(f"{why} in {n} run{'s' if n > 1 else ''}" for why, n in counts.items())
        out.append(robustness_sentence(arm, ref, g.to_dict("records"), failures))
    return out


def _factorial_lines(fact: pd.DataFrame | None, confidence: float) -> list[str]:
    lines: list[str] = []
    if fact is not None and len(fact):
        for e in fact.itertuples():
            if pd.isna(e.log_effect):
                lines.append(f"{e.term}: not estimable" + ("" if e.method == "none" else f" ({e.method})"))
            else:
                lines.append(f"{e.term}: time ×{e.ratio:.2f} ({confidence * 100:.0f} % CI {e.ratio_low:.2f}–"
                             f"{e.ratio_high:.2f}), {fmt_p(e.p)} ({e.method})")
        if fact["note"].iloc[0]:
            lines.append(f"Note: {fact['note'].iloc[0]}.")
        lines.append(additivity([Effect(**r) for r in fact.to_dict("records")]))
    elif fact is not None:
        lines.append("Factorial effects could not be estimated (too few runs or cells).")
    return lines


def _write_plots(folder: Path, phase: pd.DataFrame, spec: StudySpec) -> list[Path]:
    """Each rule's own figures (the primary rule's unsuffixed, the others' with ``__<rule slug>``)."""
    import clamp.analysis.stats.plots as plots

    arms = [a.name for a in spec.arms]
    written: list[Path] = []
    for k, rule in enumerate(spec.rules):
        suffix = "" if k == 0 else f"__{rule.slug()}"
        mine = phase[phase["rule_index"] == k]
        sel = mine[(mine["estimator"] == "threshold") & mine["included"]]
        if sel.empty:
            continue
        written += plots.save(plots.plot_phase_times(mine, rule, arms, spec.control), folder / f"stats_phase_times{suffix}")
        if sel["censored"].any():
            written += plots.save(plots.plot_km(mine, rule, arms), folder / f"stats_km{suffix}")
        written += plots.save(plots.plot_estimator_agreement(mine, rule, arms), folder / f"stats_estimators{suffix}")
    return written
