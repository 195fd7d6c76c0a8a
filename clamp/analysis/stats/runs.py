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
from clamp.names import TRIGGER_PREFIX
from clamp.store import read_json, read_metric_rows, run_seeds
from clamp.analysis.stats.phase import ESTIMATORS, estimate_phase
from clamp.phase import PhaseRule, Span, arm_windows, has_triggered_windows, run_windows
from clamp.corrections import check_correction
from clamp.analysis.stats.families import PRIMARY, SCAN, SECONDARY

PHASE_COLUMNS: tuple[str, ...] = (
    "arm", "seed", "status", "included", "rule_index", "rule", "metric", "threshold", "direction", "primary_rule",
    "span", "estimator", "time", "event", "censored", "relapsed", "in_window", "first_crossing", "last_eval", "n_evals",
    "budget",
    "stopped_at", "plateau_level", "plateau_start", "plateau_end", "plateau_duration", "plateau_ongoing",
    "sigmoid_midpoint", "sigmoid_onset", "sigmoid_width", "sigmoid_r2", "note",
)


@dataclass(frozen=True, kw_only=True)
class ArmSpec:
    """An arm as the statistics need it: name, factor levels, intervention records and windows, task, budget.

    ``windows`` are the fixed windows (:func:`clamp.phase.arm_windows`); a run's triggered windows
    come from its own trigger rows (:meth:`windows_of`).  ``budget`` is the arm's planned length in
    sequences (None when ``study.json`` does not say).
    """

    name: str
    factors: dict[str, bool] = field(default_factory=dict)
    windows: tuple[Span, ...] = ()
    task: dict = field(default_factory=dict)
    interventions: tuple[dict, ...] = ()
    budget: int | None = None

    @property
    def triggered(self) -> bool:
        return has_triggered_windows(self.interventions)

    def windows_of(self, events: dict[str, float] | None) -> list[Span]:
        """One run's windows: the fixed ones and its triggered ones where its events put them."""
        return run_windows(self.interventions, events) if self.interventions else list(self.windows)


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
    eval_every: int | None = None
    stop_after: dict | None = None
    stop_rule: PhaseRule | None = None  # the rule the stop decision watched (the study's own primary rule)
    primary_comparisons: tuple[tuple[str, str], ...] = ()  # the study's named primary family (empty: vs control)
    correction: str = "holm"

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
            ivs = tuple(iv for iv in (a.get("interventions") or []) if isinstance(iv, dict))
            budget = a.get("n_sequences", d.get("n_sequences"))
            arms.append(ArmSpec(name=a["name"], factors=dict(factors), windows=tuple(arm_windows(a)), task=task,
                                interventions=ivs, budget=int(budget) if isinstance(budget, (int, float)) else None))
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
        primary = []
        for pair in d.get("primary_comparisons") or []:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(p in names for p in pair)):
                raise ConfigError(f"study.json 'primary_comparisons' entry {pair!r} must be [arm, reference] naming "
                                  f"arms in {names}.")
            primary.append((str(pair[0]), str(pair[1])))
        correction = d.get("correction", "holm")
        check_correction(correction)
        phase = d.get("phase")
        raw_rules = [] if phase is None else (phase if isinstance(phase, list) else [phase])
        rules = tuple(PhaseRule.from_dict(r) for r in raw_rules) or (PhaseRule(),)
        alpha = d.get("alpha", 0.05)
        if not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ConfigError(f"study.json 'alpha'={alpha!r} must be a number between 0 and 1.")
        seeds = d.get("seeds") or []
        eval_every = d.get("eval_every")
        eval_every = int(eval_every) if isinstance(eval_every, (int, float)) and eval_every > 0 else None
        if eval_every is not None:
            rules = tuple(r.resolved(eval_every=eval_every) for r in rules)
        stop = d.get("stop_after_phase") if isinstance(d.get("stop_after_phase"), dict) else None
        return cls(name=str(d.get("name", "study")), seeds=tuple(int(s) for s in seeds), control=control,
                   comparisons=tuple(comparisons), rules=rules, alpha=float(alpha), arms=tuple(arms),
                   eval_every=eval_every, stop_after=stop, stop_rule=rules[0] if stop else None,
                   primary_comparisons=tuple(primary), correction=str(correction))

    def pairs(self) -> list[tuple[str, str]]:
        """(arm, reference) pairs to compare: each arm against the control, then the study's extra and primary pairs."""
        out: list[tuple[str, str]] = []
        if self.control is not None:
            out += [(a.name, self.control) for a in self.arms if a.name != self.control]
        for p in (*self.comparisons, *self.primary_comparisons):
            if p not in out and p[0] != p[1]:
                out.append(p)
        return out

    def family(self, arm: str, reference: str) -> str:
        """The correction family of a comparison (:mod:`clamp.analysis.stats.families`).

        A scan's component against the control: ``"scan <prefix>"``.  Otherwise ``"primary"`` when the
        study names it in ``primary_comparisons`` (or names none and ``reference`` is the control), else
        ``"secondary"``.

        Example:
            >>> s = StudySpec.from_dict({"name": "d", "seeds": [0], "control": "control", "comparisons": [["b", "a"]],
            ...                          "arms": [{"name": "control"}, {"name": "a"}, {"name": "b"}, {"name": "ko__L0H0"}]})
            >>> [s.family(a, r) for a, r in s.pairs()]
            ['primary', 'primary', 'scan ko', 'secondary']
        """
        from clamp.study.scan import scan_arm  # the scan naming convention (torch-free)

        scanned = scan_arm(arm)
        if scanned is not None and reference == self.control:
            return f"{SCAN} {scanned[0]}"
        if self.primary_comparisons:
            return PRIMARY if (arm, reference) in self.primary_comparisons else SECONDARY
        return PRIMARY if reference == self.control else SECONDARY

    def with_rules(self, rules: list[PhaseRule] | tuple[PhaseRule, ...]) -> "StudySpec":
        """The same study under other phase rules (the first is primary; default spans resolved as the study's)."""
        if not rules:
            raise ConfigError("give at least one phase rule, e.g. PhaseRule.parse('train/loss<0.277').")
        if self.eval_every is not None:
            rules = [r.resolved(eval_every=self.eval_every) for r in rules]
        return replace(self, rules=tuple(rules))

    def arm_spec(self, arm: str) -> ArmSpec | None:
        return next((a for a in self.arms if a.name == arm), None)

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
    """One run on disk: its status, its metrics (None when it has none), where it stopped, its trigger events.

    ``stopped_at`` is set for a run that stopped after its phase change (``run.json``'s
    ``stopped_early``): its data end there.  ``events`` maps each trigger row that fired to the
    evaluation that detected it (closed-loop windows).
    """

    arm: str
    seed: int
    status: str
    metrics: pd.DataFrame | None
    stopped_at: float | None = None
    events: dict = field(default_factory=dict)


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

    A run folder that does not exist gets status ``missing``; one without ``run.json`` gets
    ``unknown``.  Only the metrics the rules need are read, plus the trigger rows of arms with
    triggered windows (where each run's windows were: a rule that steps outside them needs them, and
    so does every rule's ``in_window`` flag).
    """
    root = Path(study_dir) / "runs"
    wanted = {r.metric for r in spec.rules} | reference_metrics(spec.rules)
    records = []
    for arm in spec.arms:
        seeds = set(spec.seeds) | set(run_seeds(root.parent, arm.name))
        arm_dir = root / arm.name
        need_events = arm.triggered  # without its events a run's triggered window would look open to the end
        for seed in sorted(seeds):
            run_dir = arm_dir / f"seed{seed}"
            status, stopped_at = "missing", None
            if run_dir.is_dir():
                rec = read_json(run_dir / "run.json")
                status = "unknown" if rec is None else str(rec.get("status", "unknown"))
                stop = (rec or {}).get("stopped_early")
                if isinstance(stop, dict) and isinstance(stop.get("at"), (int, float)):
                    stopped_at = float(stop["at"])
            metrics = _read_metrics(run_dir / "metrics.csv", seed, None if need_events else wanted)
            events = {}
            if need_events and metrics is not None:
                fired = metrics[metrics["metric"].str.startswith(TRIGGER_PREFIX) & (metrics["value"] >= 0.5)]
                events = {str(m): float(x) for m, x in fired.groupby("metric")["sequences_seen"].min().items()}
                metrics = metrics[metrics["metric"].isin(wanted)]
            records.append(RunRecord(arm=arm.name, seed=seed, status=status, metrics=metrics, stopped_at=stopped_at,
                                     events=events))
    return records


def phase_table(runs: list[RunRecord], rules: tuple[PhaseRule, ...], *, smooth: float = 0.03,
                plateau_tol: float = 0.1, windows: dict[str, tuple[Span, ...]] | None = None,
                arms: dict[str, ArmSpec] | None = None, stop_rule: PhaseRule | None = None,
                window: float | None = None) -> pd.DataFrame:
    """The phase_times table: one row per run × rule × estimator (columns :data:`PHASE_COLUMNS`).

    ``time`` is the phase-change time when ``event`` is True and the censoring time when it is
    False (the last evaluation minus the rule's span W, :mod:`clamp.phase`); ``included`` is True
    only for finished runs with a finite time.  ``rule_index`` (0: the primary rule) and ``rule``
    (its description) keep rules apart, even two on one metric; ``relapsed`` marks runs that went
    back past the threshold after their phase change (it stands; the flag is information), or crossed
    without ever staying past it for W; ``in_window`` a phase time inside one of the run's
    intervention windows under a rule that does not step outside them.
    ``budget`` is the arm's planned length; ``stopped_at`` where a run stopped after its phase
    change (its data end there: a rule other than the one the stop watched, ``stop_rule``, is
    flagged in ``note`` for such runs).  ``arms`` gives each run's windows (fixed, and triggered
    ones rebuilt from its trigger rows) for rules with ``outside_windows``; ``windows`` (arm ->
    fixed windows) is the older form.  ``window``: the shape estimators' smoothing window in sequences,
    the same for every run (:func:`clamp.analysis.stats.phase.smoothing_window`; None: ``smooth`` of each
    run's range).

    Example:
        >>> import pandas as pd
        >>> m = pd.DataFrame({"sequences_seen": [0, 10, 20, 30], "metric": "train/loss", "value": [0.7, 0.7, 0.1, 0.1]})
        >>> t = phase_table([RunRecord(arm="a", seed=0, status="finished", metrics=m)], (PhaseRule(persist=10),))
        >>> t.loc[t.estimator == "threshold", ["time", "event", "included"]].values.tolist()
        [[20.0, True, True]]
    """
    rows = []
    for run in runs:
        spec = (arms or {}).get(run.arm)
        run_spans = spec.windows_of(run.events) if spec is not None else list((windows or {}).get(run.arm, ()))
        for k, rule in enumerate(rules):
            base = {"arm": run.arm, "seed": run.seed, "status": run.status, "rule_index": k, "rule": rule.describe(),
                    "metric": rule.metric, "threshold": rule.threshold, "direction": rule.direction,
                    "primary_rule": k == 0, "span": rule.span if rule.decidable else math.nan, "relapsed": False,
                    "first_crossing": math.nan, "budget": spec.budget if spec is not None and spec.budget else math.nan,
                    "stopped_at": run.stopped_at if run.stopped_at is not None else math.nan}
            curve = None if run.metrics is None else run.metrics[run.metrics["metric"] == rule.metric]
            if curve is None or curve.empty:
                note = "no metrics file" if run.metrics is None else f"metric {rule.metric!r} not recorded"
                for est in ESTIMATORS:
                    rows.append({**base, "estimator": est, "time": math.nan, "event": False, "included": False,
                                 "note": note})
                continue
            est = estimate_phase(curve["sequences_seen"].to_numpy(float), curve["value"].to_numpy(float), rule,
                                 smooth=smooth, plateau_tol=plateau_tol, windows=run_spans, window=window)
            base.update(relapsed=est.crossing.relapsed, first_crossing=est.crossing.first)
            p, s = est.plateau, est.sigmoid
            extra = {"last_eval": est.last_eval, "n_evals": est.n_evals, "plateau_level": p.level,
                     "plateau_start": p.start, "plateau_end": p.end, "plateau_duration": p.duration,
                     "plateau_ongoing": p.ongoing, "sigmoid_midpoint": s.midpoint, "sigmoid_onset": s.onset,
                     "sigmoid_width": s.width, "sigmoid_r2": s.r2}
            stopped_elsewhere = run.stopped_at is not None and stop_rule is not None and rule != stop_rule
            these = []
            for t in est.times:
                note = t.note
                if stopped_elsewhere and not t.event:
                    note = "; ".join(filter(None, [f"data end at {run.stopped_at:.6g}, where the run stopped after its "
                                                   f"phase change under {stop_rule.describe()}", note]))
                if run.status != "finished":
                    note = "; ".join(filter(None, [f"excluded: run {run.status}", note]))
                in_window = bool(t.event and not rule.outside_windows and any(a <= t.time < b for a, b in run_spans))
                these.append({**base, **extra, "estimator": t.estimator, "time": t.time, "event": t.event,
                              "in_window": in_window, "included": run.status == "finished" and math.isfinite(t.time),
                              "note": note})
            if rule.relative_to:  # timed from a per-run event (clamp.analysis.stats.relative)
                these = retime(these, run.metrics, rule)
            rows += these
    relative = any(r.relative_to for r in rules)
    df = pd.DataFrame(rows, columns=list(PHASE_COLUMNS) + (["reference_time", "reference"] if relative else []))
    df["censored"] = ~df["event"].astype(bool) & df["time"].notna()
    df["event"] = df["event"].astype(bool)
    df["included"] = df["included"].astype(bool)
    df["relapsed"] = df["relapsed"].astype(bool)
    df["in_window"] = df["in_window"].fillna(0).astype(bool)  # NaN (no row) is not in a window
    return df
