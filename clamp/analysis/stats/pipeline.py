"""The statistics of one study, end to end: stored metrics in, tables, figures and sentences out.

Why this file exists: ``clamp stats results/<study>`` and the end of ``clamp
run`` must produce the same numbers from the same stored metrics.  This file
wires the pure pieces together — phase times per run (:mod:`.study`),
comparisons (:mod:`.compare`), factorial effects (:mod:`.factorial`), figures
(:mod:`.plots`) and sentences (:mod:`.report`) — and writes::

    phase_times.csv  one row per run × phase rule × estimator, with censoring and status
    stats.csv        one row per comparison × phase rule × estimator (``primary`` marks the headline family)
    factorial.csv    main effects and interactions (factorial studies only)
    stats.md         one plain sentence per comparison, plus warnings and method notes
    plots/stats_*    phase_times, km (when any run is censored), estimators; PNG and SVG
                     (a second rule's figures get a ``__<metric>`` suffix)

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

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clamp.errors import ConfigError
from clamp.analysis.stats.compare import (
    CORRECTIONS, MIN_RUNS, Correction, adjust_pvalues, compare_samples, min_rank_p, too_few_runs,
)
from clamp.analysis.stats.factorial import Effect, additivity, factorial_effects, not_estimable
from clamp.analysis.stats.phase import ESTIMATORS
from clamp.analysis.stats.sentences import comparison_sentence, fmt_p, markdown, robustness_sentence
from clamp.analysis.stats.runs import StudySpec, load_runs, load_study, phase_table


@dataclass(frozen=True, kw_only=True)
class StudyStats:
    """What :func:`analyse_study` computed and wrote."""

    study: StudySpec
    phase_times: pd.DataFrame
    stats: pd.DataFrame
    factorial: pd.DataFrame | None
    sentences: tuple[str, ...]
    warnings: tuple[str, ...]
    markdown: str
    outputs: tuple[Path, ...]


def compare_arms(phase_times: pd.DataFrame, spec: StudySpec, *, n_boot: int = 4000, confidence: float = 0.95,
                 correction: Correction = "holm", alpha: float = 0.05, seed: int = 0,
                 estimators: tuple[str, ...] = ESTIMATORS) -> pd.DataFrame:
    """One row per (rule, estimator, comparison) with estimates, CIs, tests and adjusted p.

    Only ``included`` runs enter; paired analysis uses the seeds both arms share.  A comparison
    with fewer than 2 included runs in either arm gets a row with NaN estimates and p-values,
    a note, ``family_size`` 0, and is left out of its family's correction.

    Args:
        phase_times: the table from :func:`clamp.analysis.stats.runs.phase_table`.
        spec: the study (its rules and comparison pairs).
        n_boot: bootstrap resamples per comparison.
        confidence: CI level.
        correction: multiple-comparison correction within each (rule, estimator) family.
        alpha: significance level for the ``significant`` and ``can_reach_alpha`` columns.
        seed: seeds every bootstrap and permutation.
        estimators: which estimators to compare (the threshold rule is the primary one).

    Returns:
        The stats table (empty, with its columns, when the study has no pairs).
    """
    rows = []
    for k, rule in enumerate(spec.rules):
        for est in estimators:
            sel = phase_times[(phase_times["metric"] == rule.metric) & (phase_times["estimator"] == est)]
            family = []
            for arm, ref in spec.pairs():
                a = sel[(sel["arm"] == arm) & sel["included"]]
                b = sel[(sel["arm"] == ref) & sel["included"]]
                pairs = [(i, j) for i, s in enumerate(a["seed"]) for j, t in enumerate(b["seed"]) if s == t]
                missing = int(((sel["arm"] == arm) | (sel["arm"] == ref)).sum() - len(a) - len(b))
                c = compare_samples(a["time"], a["event"], b["time"], b["event"], arm=arm, reference=ref,
                                    pairs=pairs, n_boot=n_boot, confidence=confidence, seed=seed)
                d = c.to_dict()
                d.update(metric=rule.metric, estimator=est, primary=(k == 0 and est == "threshold"),
                         n_excluded=missing)
                family.append(d)
            tested = [d for d in family if not too_few_runs(d["n_arm"], d["n_reference"])]
            for d in family:
                d.update(p_adjusted=float("nan"), correction=correction, significant=False, family_size=0,
                         can_reach_alpha=False)
            if tested:
                adj = adjust_pvalues([d["p"] for d in tested], correction)
                m = len(tested)
                # Holm rejects nothing unless the smallest p is <= alpha / m; a comparison can
                # then be rejected at best with multiplier 1 (Holm) or m (Bonferroni).
                floor = min(d["min_p"] for d in tested) * (1 if correction == "none" else m)
                for d, p in zip(tested, adj):
                    d["p_adjusted"] = float(p)
                    d["significant"] = bool(p < alpha)
                    d["family_size"] = m
                    own = d["min_p"] * (m if correction == "bonferroni" else 1)
                    d["can_reach_alpha"] = bool(own <= alpha and floor <= alpha)
            rows += family
    lead = ["metric", "estimator", "primary", "arm", "reference", "n_arm", "n_reference", "crossed_arm",
            "crossed_reference", "censored_arm", "censored_reference", "n_excluded", "median_arm", "median_reference",
            "ratio", "ratio_low", "ratio_high", "ratio_bound", "ratio_bound_kind", "difference", "difference_low",
            "difference_high", "rmst_tau", "rmst_difference", "rmst_low", "rmst_high", "test", "p", "p_adjusted",
            "correction", "significant", "family_size", "min_p", "can_reach_alpha", "p_rank", "rank_method",
            "p_logrank", "n_pairs", "paired_ratio", "paired_ratio_low", "paired_ratio_high", "paired_test",
            "paired_p", "paired_min_p", "confidence", "note"]
    return pd.DataFrame(rows, columns=lead)


def factorial_table(phase_times: pd.DataFrame, spec: StudySpec, *, confidence: float = 0.95) -> pd.DataFrame | None:
    """Factorial effects on the primary rule's threshold times of included runs (None if not factorial)."""
    if not spec.factorial:
        return None
    rule = spec.rules[0]
    levels = {a.name: a.factors for a in spec.arms if a.factors}
    sel = phase_times[(phase_times["metric"] == rule.metric) & (phase_times["estimator"] == "threshold")
                      & phase_times["included"] & phase_times["arm"].isin(list(levels))]
    effects = factorial_effects(sel["time"].to_numpy(float), sel["event"].to_numpy(bool),
                                [levels[a] for a in sel["arm"]], confidence=confidence)
    if not effects:  # no included run at all: the factors come from the study
        effects = not_estimable(sorted(next(iter(levels.values()))), n=0, n_censored=0, note="no included runs")
    return pd.DataFrame([e.to_dict() for e in effects],
                        columns=["term", "order", "log_effect", "log_low", "log_high", "ratio", "ratio_low",
                                 "ratio_high", "p", "method", "n", "n_censored", "note"])


def _slug(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", metric).strip("-")


def _warnings(spec: StudySpec, phase_times: pd.DataFrame, stats_df: pd.DataFrame, alpha: float,
              correction: str) -> list[str]:
    out = []
    prim = phase_times[(phase_times["metric"] == spec.rules[0].metric) & (phase_times["estimator"] == "threshold")]
    excluded = prim[prim["status"] != "finished"]
    if len(excluded):
        runs = ", ".join(f"{r.arm}/seed{r.seed} ({r.status})" for r in excluded.itertuples())
        out.append(f"Excluded from all comparisons (not finished): {runs}.")
    cens = prim[prim["included"] & prim["censored"]]
    if len(cens):
        out.append(f"{len(cens)} finished run(s) never crossed and are right-censored at their last evaluation; "
                   "their arms' medians come from Kaplan–Meier estimates and the log-rank test is primary.")
    no_metric = prim[(prim["status"] == "finished") & prim["time"].isna()]
    if len(no_metric):
        out.append(f"{len(no_metric)} finished run(s) have no {spec.rules[0].metric} values and were left out.")
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
        if r.test == "log-rank" and r.p < r.min_p:
            out.append(f"{name}: the log-rank p ({r.p:.3g}) is asymptotic and below what an exact test can reach "
                       f"with {r.n_arm} vs {r.n_reference} runs ({r.min_p:.3g}); treat it as approximate "
                       f"(exact rank test with censored runs tied at the top: p = {r.p_rank:.3g}).")
        if r.n_pairs and r.paired_min_p > alpha:
            paired.setdefault((r.n_pairs, r.paired_min_p), []).append(name)
    for (n1, n2, mp), names in floor.items():
        out.append(f"With {n1} vs {n2} runs the smallest p an exact rank test can reach is {mp:.3g} > alpha = "
                   f"{alpha:g}, so these comparisons cannot be significant: {', '.join(names)}. Add seeds.")
    if family:
        out.append(f"After {correction} correction across {len(primary)} comparisons these cannot reach adjusted "
                   f"p < {alpha:g}: {', '.join(family)}. Add seeds or compare fewer arms.")
    for (n, mp), names in paired.items():
        out.append(f"The paired analyses (secondary, in stats.csv) of {', '.join(names)} cannot reach p < {alpha:g} "
                   f"with {n} shared seeds (floor {mp:.3g}).")
    if len(primary):
        n1, n2 = int(primary["n_arm"].min()), int(primary["n_reference"].min())
        out.append(f"Design floor: with {n1} vs {n2} runs the smallest two-sided exact rank-test p is "
                   f"{min_rank_p(n1, n2):.3g} (alpha = {alpha:g}, {len(primary)} comparison(s), {correction} correction).")
    return out


METHOD_NOTES = (
    "Medians are Kaplan–Meier medians when an arm has censored runs (not reached = undefined, never invented); "
    "ratio = median(arm) / median(reference) with a seeded percentile bootstrap CI (arms resampled independently).",
    "Primary test: exact two-sided Mann–Whitney rank test when no run is censored; log-rank test (asymptotic) "
    "otherwise. The rank test with censoring ties every run not crossed by the earliest censoring time at the top.",
    "Paired analysis over shared seeds (same initialisation and data): Wilcoxon signed-rank on log time ratios, "
    "or a sign test when pairs contain censored runs; a secondary check in stats.csv.",
    "Other estimators re-time crossings decided by the threshold rule: steepest descent of the smoothed curve, "
    "sigmoid midpoint and onset, least-squares change point.",
)


def analyse_study(study_dir: str | Path, *, alpha: float | None = None, quiet: bool = False, n_boot: int = 4000,
                  correction: Correction = "holm", seed: int = 0, plots: bool = True) -> StudyStats:
    """Recompute every statistic of a study from its stored metrics and write the outputs into ``study_dir``.

    Args:
        study_dir: ``results/<study>`` (holds study.json and runs/).
        alpha: significance level (default: the study's ``alpha``, else 0.05); CIs are at 1 − alpha.
        quiet: do not print the sentences.
        n_boot: bootstrap resamples per comparison.
        correction: ``"holm"`` (default), ``"bonferroni"`` or ``"none"``, within each (rule, estimator) family.
        seed: seeds all resampling (same metrics → same numbers).
        plots: write the figures.

    Returns:
        A :class:`StudyStats` with the tables, sentences and written paths.

    Example:
        >>> import json, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "study.json").write_text(json.dumps({"name": "demo", "seeds": [0], "control": None,
        ...                                                "arms": [{"name": "a"}]}))
        >>> analyse_study(d, quiet=True, plots=False).sentences
        ()
    """
    if correction not in CORRECTIONS:
        raise ConfigError(f"correction={correction!r} is unknown; choose one of {list(CORRECTIONS)}.")
    if n_boot < 100:
        raise ConfigError(f"n_boot={n_boot} is too small for a bootstrap CI; use at least 100 (default 4000).")
    root = Path(study_dir)
    spec = load_study(root)
    alpha = spec.alpha if alpha is None else float(alpha)
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha} must be between 0 and 1.")
    confidence = 1 - alpha
    runs = load_runs(root, spec)
    phase = phase_table(runs, spec.rules)
    stats_df = compare_arms(phase, spec, n_boot=n_boot, confidence=confidence, correction=correction, alpha=alpha,
                            seed=seed)
    fact = factorial_table(phase, spec, confidence=confidence)
    primary = stats_df[stats_df["primary"]]
    sentences = tuple(comparison_sentence(r, correction=correction, control=spec.control) for _, r in primary.iterrows())
    robust = []
    for (arm, ref), g in stats_df[stats_df["metric"] == spec.rules[0].metric].groupby(["arm", "reference"], sort=False):
        head = g[g["estimator"] == "threshold"] if (g["estimator"] == "threshold").any() else g
        if too_few_runs(int(head["n_arm"].iloc[0]), int(head["n_reference"].iloc[0])):
            continue
        robust.append(robustness_sentence(arm, ref, dict(zip(g["estimator"], g["ratio"]))))
    fact_lines = []
    if fact is not None and len(fact):
        for e in fact.itertuples():
            if pd.isna(e.log_effect):
                fact_lines.append(f"{e.term}: not estimable" + ("" if e.method == "none" else f" ({e.method})"))
            else:
                fact_lines.append(f"{e.term}: time ×{e.ratio:.2f} ({confidence * 100:.0f} % CI {e.ratio_low:.2f}–"
                                  f"{e.ratio_high:.2f}), {fmt_p(e.p)} ({e.method})")
        if fact["note"].iloc[0]:
            fact_lines.append(f"Note: {fact['note'].iloc[0]}.")
        fact_lines.append(additivity([Effect(**r) for r in fact.to_dict("records")]))
    elif fact is not None:
        fact_lines.append("Factorial effects could not be estimated (too few runs or cells).")
    warns = _warnings(spec, phase, stats_df, alpha, correction)
    md = markdown(spec.name, spec.rules[0], sentences, robust, fact_lines, warns, METHOD_NOTES)

    outputs = [root / "phase_times.csv", root / "stats.csv", root / "stats.md"]
    phase.to_csv(outputs[0], index=False)
    stats_df.to_csv(outputs[1], index=False)
    outputs[2].write_text(md)
    if fact is not None:
        outputs.append(root / "factorial.csv")
        fact.to_csv(outputs[-1], index=False)
    if plots:
        outputs += _write_plots(root / "plots", phase, spec)
    if not quiet:
        print(md, end="")
        print(f"wrote {', '.join(str(p.relative_to(root)) for p in outputs)} in {root}")
    return StudyStats(study=spec, phase_times=phase, stats=stats_df, factorial=fact, sentences=sentences,
                      warnings=tuple(warns), markdown=md, outputs=tuple(outputs))


def _write_plots(folder: Path, phase: pd.DataFrame, spec: StudySpec) -> list[Path]:
    from clamp.analysis.stats import plots

    arms = [a.name for a in spec.arms]
    written: list[Path] = []
    for k, rule in enumerate(spec.rules):
        suffix = "" if k == 0 else f"__{_slug(rule.metric)}"
        sel = phase[(phase["metric"] == rule.metric) & (phase["estimator"] == "threshold") & phase["included"]]
        if sel.empty:
            continue
        written += plots.save(plots.plot_phase_times(phase, rule, arms, spec.control), folder / f"stats_phase_times{suffix}")
        if sel["censored"].any():
            written += plots.save(plots.plot_km(phase, rule, arms), folder / f"stats_km{suffix}")
        written += plots.save(plots.plot_estimator_agreement(phase, rule, arms), folder / f"stats_estimators{suffix}")
    return written
