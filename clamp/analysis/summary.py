"""What a study's results say, as data and words: the per-run summary table, interventions and windows in words.

Why this file exists: ``summary.csv``, ``report.md``, ``index.html`` and the notebook API show the
same facts (each run's status, final metrics and crossing; what each arm's interventions do
and when; how often they fired); they are computed once, here, from the stored files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from clamp.analysis.metrics import read_metrics, run_events
from clamp.importpath import PREFIX as STUDY_MODULE_PREFIX
from clamp.interventions.when import When
from clamp.names import FIRED_PREFIX
from clamp.phase import LN2, PhaseRule, crossing_time, run_windows
from clamp.store import atomic_write_text, read_json, run_dir
from clamp.training.config import TrainConfig
from clamp.training.config import grid_words as train_grid_words

STATUS_ORDER = ("finished", "diverged", "failed", "running", "pending")


def load_metrics(study_dir: str | Path) -> pd.DataFrame:
    """All runs' metrics in long format: ``arm, seed, sequences_seen, metric, value`` (see :func:`clamp.analysis.results.read_metrics`)."""
    return read_metrics(study_dir)


def phase_rules(study: dict) -> list[dict]:
    """The phase rule(s) a ``study.json`` records, as dicts (Singh et al.'s rule when it records none)."""
    phase = study.get("phase") or {"metric": "train/loss", "threshold": 0.4 * LN2, "direction": "below"}
    return phase if isinstance(phase, list) else [phase]


def rule_words(study: dict) -> str:
    """The study's phase rule(s) in words, every setting shown (span, windows, the event it is timed from).

    Example:
        >>> rule_words({"phase": [{"metric": "train/loss", "threshold": 0.3, "persist": 3000},
        ...                       {"metric": "train/loss", "threshold": 0.3, "persist": 3000, "relative_to": "ko:start"}]})
        'train/loss < 0.3, lasting 3,000 sequences; train/loss < 0.3, lasting 3,000 sequences, timed from ko:start'
    """
    return "; ".join(PhaseRule.from_dict(r).describe() for r in phase_rules(study))


def grid_words(study: dict) -> str:
    """When a study's runs evaluate, in words (per arm where arms differ): the grid snaps to batch boundaries.

    Example:
        >>> grid_words({"arms": [{"name": "a", "train": {"n_sequences": 2000, "eval_every": 500}}]})
        'evaluations every 500 sequences, at the first batch boundary (batch 32) at or past each multiple: 0, 512, 1,024, 1,504, … and at the end; a run of 2,000 sequences ends at 2,016 (rounded up to a whole batch)'
    """
    return train_grid_words([(a["name"], TrainConfig.from_dict(a["train"])) for a in study.get("arms", [])
                             if isinstance(a.get("train"), dict)])


def summary_frame(study_dir: str | Path) -> pd.DataFrame:
    """One row per (arm, seed) of the study, with status, final metrics and crossing time."""
    study_dir = Path(study_dir)
    study = read_json(study_dir / "study.json") or {}
    metrics = load_metrics(study_dir)
    rules = phase_rules(study)
    rows = []
    for arm in study.get("arms", []):
        for seed in study.get("seeds", []):
            rec = read_json(run_dir(study_dir, arm["name"], seed) / "run.json") or {"status": "pending"}
            row = {"arm": arm["name"], "seed": seed, "status": rec.get("status", "pending")}
            m = metrics[(metrics["arm"] == arm["name"]) & (metrics["seed"] == seed)]
            row["sequences_seen"] = int(m["sequences_seen"].max()) if len(m) else 0
            # the statistics' own crossing rule (persistence, windows fixed and triggered, relapse)
            windows = run_windows(arm.get("interventions") or [], run_events(m, arm["name"], seed))
            for i, rule in enumerate(rules):
                r = PhaseRule.from_dict(rule)
                c = crossing_time(m["sequences_seen"][m["metric"] == r.metric], m["value"][m["metric"] == r.metric], r,
                                  windows=windows)
                row["crossed_at" if i == 0 else f"crossed_at_{i}"] = c.time if c.event else float("nan")
            if len(m):
                last = m[m["sequences_seen"] == m["sequences_seen"].max()].set_index("metric")["value"]
                for name in sorted(last.index):
                    if name.endswith("/loss") or name.endswith("/acc"):
                        row[f"final_{name.replace('/', '_')}"] = float(last[name])
            row["diverged_at"] = rec.get("diverged_at")
            row["wall_seconds"] = rec.get("timings", {}).get("wall_seconds")
            row["hash"] = rec.get("hash")
            row["error"] = (rec.get("error") or "").splitlines()[0] if rec.get("error") else ""
            rows.append(row)
    return pd.DataFrame(rows)


def write_summary(study_dir: str | Path) -> Path:
    """Write ``summary.csv`` (one row per run) atomically; returns its path."""
    path = Path(study_dir) / "summary.csv"
    atomic_write_text(path, summary_frame(study_dir).to_csv(index=False))
    return path


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"
    return str(v)


def window_words(windows: Sequence[dict] | None) -> str:
    """An intervention's windows in words, in sequences seen.

    A closed-loop window names its event; one that opens on an event for a fixed ``duration`` says so
    (it does not run to the end of training).

    Example:
        >>> window_words([{"start": 0, "stop": 20000}, {"start": 30000, "stop": None}])
        'sequences 0–20,000 and 30,000–end of training'
        >>> window_words([{"start": {"when": "train/loss", "op": "<", "threshold": 0.5, "duration": 2000}, "stop": None}])
        'sequences [when train/loss < 0.5] for 2,000 sequences'
    """
    if not windows:
        return "whole training"

    def event(d: dict) -> str:
        w = When.from_dict(d)
        return f"[when {w.metric} {w.op} {w.threshold:.4g}" + (f", then {w.delay:,} sequences]" if w.delay else "]")

    def end(v: object, none: str) -> str:  # a number, None, or a trigger's dict (clamp.When)
        if isinstance(v, dict):
            return event(v)
        return none if v is None else f"{int(v):,}"

    parts = []
    for w in windows:
        start, stop = w.get("start") or 0, w.get("stop")
        duration = start.get("duration") if isinstance(start, dict) else None
        if duration is not None:  # open for a fixed length after the event, or until an earlier stop
            parts.append(f"{event(start)} for {int(duration):,} sequences"
                         + ("" if stop is None else f" or until {end(stop, '')}, whichever is first"))
        else:
            parts.append(end(start, "0") + "–" + end(stop, "end of training"))
    return "sequences " + " and ".join(parts)


_QUIET_KEYS = {"kind", "name", "windows"}


def intervention_words(item: dict) -> str:
    """One intervention of ``study.json`` in words: name, kind, its non-empty settings and its windows.

    Generic over kinds (built-in or a user's): every setting the record stores is shown.

    Example:
        >>> intervention_words({"kind": "knockout", "name": "ko", "windows": [{"start": 0, "stop": None}],
        ...                     "site": "blocks.1.attn.hook_v", "keep": [0], "heads": None})
        'ko (knockout; site=blocks.1.attn.hook_v, keep=[0]) during sequences 0–end of training'
    """
    settings = ", ".join(f"{k}={v}" for k, v in item.items() if k not in _QUIET_KEYS and v not in (None, [], {}, ""))
    name = item.get("name") or item.get("kind")
    kind = f"{item.get('kind')}; {settings}" if settings else f"{item.get('kind')}"
    return f"{name} ({kind}) during {window_words(item.get('windows'))}"


def fired_totals(df: pd.DataFrame, arm: str) -> dict[str, float]:
    """How many times each intervention of ``arm`` fired in the whole run: the sum of its ``fired/<name>``
    counts over every evaluation (so over all its windows), median over seeds.

    A window that ended before the last evaluation still counts: the total is over
    the run, not the last interval.  0 means it never fired.

    Example:
        >>> d = pd.DataFrame({"arm": "a", "seed": [0, 0, 0], "sequences_seen": [0, 10, 20],
        ...                   "metric": "fired/clamp", "value": [1.0, 4.0, 0.0]})
        >>> fired_totals(d, "a")
        {'clamp': 5.0}
    """
    d = df[(df["arm"] == arm) & df["metric"].str.startswith(FIRED_PREFIX)]
    if not len(d):
        return {}
    per_run = d.groupby(["metric", "seed"])["value"].sum().groupby("metric").median()
    return {m.removeprefix(FIRED_PREFIX): float(v) for m, v in per_run.items()}


def intervention_text(arm: dict) -> str:
    items = arm.get("interventions") or []
    if not items:
        return "none"
    return "; ".join(f"`{i.get('name') or i.get('kind')}` ({window_words(i.get('windows'))})" for i in items)


def fired_text(df: pd.DataFrame, arm: str) -> str:
    return ", ".join(f"{name}: {v:,.0f}" for name, v in fired_totals(df, arm).items())


def model_words(model: dict) -> str:
    """A model record of ``study.json`` in a few words, for any model the study can train.

    Example:
        >>> model_words({"n_layers": 2, "n_heads": 8, "d_model": 64})
        '2L × 8H, d=64'
        >>> model_words({"kind": "foreign", "factory": "clamp.model.adapters:gpt2_lm", "kwargs": {"n_layer": 2}})
        'gpt2_lm(n_layer=2)'
    """
    if model.get("kind") == "foreign" or "factory" in model:
        kwargs = model.get("kwargs") or {}
        return f"{str(model.get('factory', '?')).rsplit(':', 1)[-1]}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    return f"{model.get('n_layers', '?')}L × {model.get('n_heads', '?')}H, d={model.get('d_model', '?')}"


def code_lines(study_dir: str | Path, study: dict) -> list[str]:
    """What code the numbers came from, beyond the clamp revision: the study file's hash, each arm's user-code
    fingerprints (:mod:`clamp.fingerprint`, part of its runs' keys), and every run whose unknown code was
    accepted (``clamp run --accept-unknown-code``).

    Example:
        >>> code_lines(".", {"study_file": "s.py", "invocations": [{"study_file": "s.py", "study_file_sha256": "ab" * 32}],
        ...                  "arms": [{"name": "a", "code": {"clamp_study_s_1a2b:f": "0123456789abcdef",
        ...                                                  "helpers:g": "fedcba9876543210"}}], "seeds": []})
        ['study file s.py (sha256 abababababab…)', 'arm `a` user code: f (study file) 0123456789ab, helpers:g fedcba987654']
    """
    out = []
    last = (study.get("invocations") or [{}])[-1]
    if study.get("study_file") or last.get("study_file"):
        digest = last.get("study_file_sha256") or study.get("study_file_sha256")
        out.append(f"study file {last.get('study_file') or study['study_file']}"
                   + (f" (sha256 {digest[:12]}…)" if digest else ""))

    def where(path: str) -> str:  # a study file's own definitions are named as such, not by their module's alias
        module, _, name = path.partition(":")
        return f"{name} (study file)" if module.startswith(STUDY_MODULE_PREFIX) else path

    for arm in study.get("arms", []):
        if arm.get("code"):
            out.append(f"arm `{arm['name']}` user code: "
                       + ", ".join(f"{where(path)} {digest[:12]}" for path, digest in sorted(arm["code"].items())))
    accepted = [f"{arm['name']}/seed{seed}" for arm in study.get("arms", []) for seed in study.get("seeds", [])
                if (read_json(run_dir(study_dir, arm["name"], seed) / "run.json") or {}).get("code_accepted")]
    if accepted:
        out.append(f"code unknown, accepted with --accept-unknown-code (written before clamp recorded user code): "
                   f"{', '.join(accepted)}")
    return out


def budget_words(study: dict) -> str:
    """Each arm's planned length, grouped: ``32,000 sequences each``, or per arm where they differ.

    Example:
        >>> budget_words({"n_sequences": 600000, "arms": [{"name": "control", "n_sequences": 2000000},
        ...                                                {"name": "match", "n_sequences": 600000}]})
        'budgets: control 2,000,000 sequences; match 600,000 sequences'
    """
    groups: dict[int, list[str]] = {}
    for a in study.get("arms", []):
        groups.setdefault(int(a.get("n_sequences") or study.get("n_sequences", 0)), []).append(a["name"])
    if len(groups) <= 1:
        return f"{int(next(iter(groups), study.get('n_sequences', 0))):,} sequences each"
    return "budgets: " + "; ".join(f"{', '.join(names)} {n:,} sequences" for n, names in groups.items())


def budget_lines(study: dict) -> list[str]:
    """Report lines for arms with their own length, and for stopping after the phase change."""
    n = study.get("n_sequences", 0)
    own = [f"`{a['name']}` {a['n_sequences']:,}" for a in study.get("arms", []) if a.get("n_sequences", n) != n]
    out = [f"- arms with their own length: {', '.join(own)} sequences"] if own else []
    stop = study.get("stop_after_phase")
    if stop:
        out.append(f"- runs stop {stop['margin']:,} sequences (+ {stop['relative']:g} x the phase time) after their "
                   "decided phase change under the primary rule; their curves end there (their phase time is the one "
                   "they would have had trained on)")
    return out


__all__ = ["STATUS_ORDER", "budget_lines", "budget_words", "code_lines", "model_words", "fired_text", "fired_totals", "fmt", "intervention_text", "intervention_words", "load_metrics", "grid_words", "phase_rules", "rule_words", "summary_frame", "window_words",
           "write_summary"]
