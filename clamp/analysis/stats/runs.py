"""Reading a study folder and turning its metrics into per-run phase-change times.

Why this file exists: the statistics must be recomputable from what a study
stored, without training.  It reads the results layout (defined in
:mod:`clamp.store`, whose reader parses every ``metrics.csv``)::

    results/<study>/study.json                      name, seeds, control, comparisons, phase rule(s), alpha, arms
    results/<study>/runs/<arm>/seed<seed>/run.json  {"arm", "seed", "status", ...}
    results/<study>/runs/<arm>/seed<seed>/metrics.csv  sequences_seen,run,metric,value

and produces the tidy ``phase_times`` table: one row per run × phase rule ×
estimator.  Runs whose status is not ``finished`` are listed (with their
times, when they have metrics) but marked ``included=False``; the analysis
leaves them out of every comparison and says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from clamp.errors import ConfigError
from clamp.analysis.metrics import read_run_metrics
from clamp.analysis.stats.relative import reference_metrics, retime
from clamp.store import read_metric_rows, run_seeds
from clamp.analysis.stats.phase import ESTIMATORS, estimate_phase
from clamp.phase import PhaseRule, Span, arm_windows

PHASE_COLUMNS: tuple[str, ...] = (
    "arm", "seed", "status", "included", "rule_index", "rule", "metric", "threshold", "direction", "primary_rule",
    "estimator", "time", "event", "censored", "relapsed", "first_crossing", "last_eval", "n_evals", "plateau_level", "plateau_start", "plateau_end",
    "plateau_duration", "plateau_ongoing", "sigmoid_midpoint", "sigmoid_onset", "sigmoid_width", "sigmoid_r2", "note",
)


@dataclass(frozen=True, kw_only=True)
class ArmSpec:
    """An arm as the statistics need it: name, factor levels (factorial studies), intervention windows, task record."""

    name: str
    factors: dict[str, bool] = field(default_factory=dict)
    windows: tuple[Span, ...] = ()
    task: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """The parts of ``study.json`` the statistics use (provenance fields are ignored).

    Example:
        >>> s = StudySpec.from_dict({"name": "demo", "seeds": [0, 1], "control": "control",
        ...                          "arms": [{"name": "control"}, {"name": "match"}]})
        >>> s.rules[0].metric, s.pairs()
        ('train/loss', [('match', 'control')])
    """

    name: str
    seeds: tuple[int, ...]
    control: str | None
    comparisons: tuple[tuple[str, str], ...]
    rules: tuple[PhaseRule, ...]
    alpha: float
    arms: tuple[ArmSpec, ...]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudySpec":
        if not isinstance(d, dict):
            raise ConfigError("study.json must hold a JSON object.")
        arms_raw = d.get("arms")
        if not isinstance(arms_raw, list) or not arms_raw:
            raise ConfigError("study.json 'arms' must be a non-empty list of objects with a 'name'.")
        arms = []
        for a in arms_raw:
            if not isinstance(a, dict) or not isinstance(a.get("name"), str):
                raise ConfigError(f"study.json arm {a!r} needs a string 'name'.")
            factors = a.get("factors") or {}
            if not isinstance(factors, dict) or not all(isinstance(v, bool) for v in factors.values()):
                raise ConfigError(f"study.json arm {a['name']!r}: 'factors' must map factor names to true/false.")
            task = a.get("task") if isinstance(a.get("task"), dict) else {}
            arms.append(ArmSpec(name=a["name"], factors=dict(factors), windows=tuple(arm_windows(a)), task=task))
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"study.json arm names must be unique; got {names}.")
        control = d.get("control")
        if control is not None and control not in names:
            raise ConfigError(f"study.json 'control'={control!r} is not an arm; choose one of {names} or null.")
        comparisons = []
        for pair in d.get("comparisons") or []:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(p in names for p in pair)):
                raise ConfigError(f"study.json 'comparisons' entry {pair!r} must be [arm, reference] naming arms in {names}.")
            comparisons.append((str(pair[0]), str(pair[1])))
        phase = d.get("phase")
        raw_rules = [] if phase is None else (phase if isinstance(phase, list) else [phase])
        rules = tuple(PhaseRule.from_dict(r) for r in raw_rules) or (PhaseRule(),)
        alpha = d.get("alpha", 0.05)
        if not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ConfigError(f"study.json 'alpha'={alpha!r} must be a number between 0 and 1.")
        seeds = d.get("seeds") or []
        return cls(name=str(d.get("name", "study")), seeds=tuple(int(s) for s in seeds), control=control,
                   comparisons=tuple(comparisons), rules=rules, alpha=float(alpha), arms=tuple(arms))

    def pairs(self) -> list[tuple[str, str]]:
        """(arm, reference) pairs to compare: each arm against the control, then the study's extra pairs."""
        out: list[tuple[str, str]] = []
        if self.control is not None:
            out += [(a.name, self.control) for a in self.arms if a.name != self.control]
        for p in self.comparisons:
            if p not in out and p[0] != p[1]:
                out.append(p)
        return out

    def with_rules(self, rules: list[PhaseRule] | tuple[PhaseRule, ...]) -> "StudySpec":
        """The same study under other phase rules (the first is primary)."""
        if not rules:
            raise ConfigError("give at least one phase rule, e.g. PhaseRule.parse('train/loss<0.277').")
        return replace(self, rules=tuple(rules))

    def windows(self, arm: str) -> tuple[Span, ...]:
        return next((a.windows for a in self.arms if a.name == arm), ())

    @property
    def factorial(self) -> bool:
        return any(a.factors for a in self.arms)


def read_study_spec(study_dir: str | Path) -> StudySpec:
    """Read ``study_dir/study.json``.

    Raises:
        ConfigError: when the file is missing or malformed (the message names the fix).
    """
    path = Path(study_dir) / "study.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found; pass a study folder written by 'clamp run' (results/<study>).")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); fix or regenerate it with 'clamp run'.") from e
    return StudySpec.from_dict(raw)


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One run on disk: where it is, its status, and its metrics (None when it has none)."""

    arm: str
    seed: int
    status: str
    metrics: pd.DataFrame | None


def _read_metrics(path: Path, seed: int, wanted: set[str]) -> pd.DataFrame | None:
    """One run's metrics (:func:`clamp.analysis.results.read_run_metrics`), or None without a file."""
    return read_run_metrics(path, seed, wanted) if path.is_file() else None


def recorded_metrics(study_dir: str | Path) -> list[str]:
    """The metric names found in the study's metrics files (sorted), e.g. to check a rule given on the command line."""
    names: set[str] = set()
    for path in sorted(Path(study_dir).glob("runs/*/seed*/metrics.csv")):
        names |= set(read_metric_rows(path).metric)
    return sorted(names)


def load_runs(study_dir: str | Path, spec: StudySpec) -> list[RunRecord]:
    """Every run of the study: the expected arm × seed grid plus any extra seeds found on disk.

    A run folder that does not exist gets status ``missing``; one without
    ``run.json`` gets ``unknown``.
    """
    root = Path(study_dir) / "runs"
    wanted = {r.metric for r in spec.rules} | reference_metrics(spec.rules)
    records = []
    for arm in spec.arms:
        seeds = set(spec.seeds) | set(run_seeds(root.parent, arm.name))
        arm_dir = root / arm.name
        for seed in sorted(seeds):
            run_dir = arm_dir / f"seed{seed}"
            status = "missing"
            if run_dir.is_dir():
                status = "unknown"
                info = run_dir / "run.json"
                if info.is_file():
                    try:
                        status = str(json.loads(info.read_text()).get("status", "unknown"))
                    except json.JSONDecodeError:
                        status = "unknown"
            records.append(RunRecord(arm=arm.name, seed=seed, status=status,
                                     metrics=_read_metrics(run_dir / "metrics.csv", seed, wanted)))
    return records


def phase_table(runs: list[RunRecord], rules: tuple[PhaseRule, ...], *, smooth: float = 0.03,
                plateau_tol: float = 0.1, windows: dict[str, tuple[Span, ...]] | None = None) -> pd.DataFrame:
    """The phase_times table: one row per run × rule × estimator (columns :data:`PHASE_COLUMNS`).

    ``time`` is the phase-change time when ``event`` is True and the censoring
    time (last evaluation) when it is False; ``included`` is True only for
    finished runs with a finite time.  ``rule_index`` (0: the primary rule) and
    ``rule`` (its description) keep rules apart, even two on one metric;
    ``relapsed`` marks runs that crossed (at ``first_crossing``) but were not
    past the threshold at their last evaluation.  ``windows`` maps an arm to its
    intervention windows (used by rules with ``outside_windows``).

    Example:
        >>> import pandas as pd
        >>> m = pd.DataFrame({"sequences_seen": [0, 10, 20], "metric": "train/loss", "value": [0.7, 0.7, 0.1]})
        >>> t = phase_table([RunRecord(arm="a", seed=0, status="finished", metrics=m)], (PhaseRule(),))
        >>> t.loc[t.estimator == "threshold", ["time", "event", "included"]].values.tolist()
        [[20.0, True, True]]
    """
    rows = []
    for run in runs:
        for k, rule in enumerate(rules):
            base = {"arm": run.arm, "seed": run.seed, "status": run.status, "rule_index": k, "rule": rule.describe(),
                    "metric": rule.metric, "threshold": rule.threshold, "direction": rule.direction,
                    "primary_rule": k == 0, "relapsed": False, "first_crossing": math.nan}
            curve = None if run.metrics is None else run.metrics[run.metrics["metric"] == rule.metric]
            if curve is None or curve.empty:
                note = "no metrics file" if run.metrics is None else f"metric {rule.metric!r} not recorded"
                for est in ESTIMATORS:
                    rows.append({**base, "estimator": est, "time": math.nan, "event": False, "included": False,
                                 "note": note})
                continue
            est = estimate_phase(curve["sequences_seen"].to_numpy(float), curve["value"].to_numpy(float), rule,
                                 smooth=smooth, plateau_tol=plateau_tol, windows=(windows or {}).get(run.arm, ()))
            base.update(relapsed=est.crossing.relapsed, first_crossing=est.crossing.first)
            p, s = est.plateau, est.sigmoid
            extra = {"last_eval": est.last_eval, "n_evals": est.n_evals, "plateau_level": p.level,
                     "plateau_start": p.start, "plateau_end": p.end, "plateau_duration": p.duration,
                     "plateau_ongoing": p.ongoing, "sigmoid_midpoint": s.midpoint, "sigmoid_onset": s.onset,
                     "sigmoid_width": s.width, "sigmoid_r2": s.r2}
            these = []
            for t in est.times:
                note = t.note
                if run.status != "finished":
                    note = "; ".join(filter(None, [f"excluded: run {run.status}", note]))
                these.append({**base, **extra, "estimator": t.estimator, "time": t.time, "event": t.event,
                              "included": run.status == "finished" and math.isfinite(t.time), "note": note})
            if rule.relative_to:  # timed from a per-run event (clamp.analysis.stats.relative)
                these = retime(these, run.metrics, rule)
            rows += these
    relative = any(r.relative_to for r in rules)
    df = pd.DataFrame(rows, columns=list(PHASE_COLUMNS) + (["reference_time", "reference"] if relative else []))
    df["censored"] = ~df["event"].astype(bool) & df["time"].notna()
    df["event"] = df["event"].astype(bool)
    df["included"] = df["included"].astype(bool)
    df["relapsed"] = df["relapsed"].astype(bool)
    return df
