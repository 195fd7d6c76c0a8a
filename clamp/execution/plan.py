"""Planning a ``clamp run``: what the results folder already holds, and the packs still to train.

Why this file exists: a rerun must never delete finished work nor leave runs of two
configurations under one arm name, and what it trains must be decided before anything is
written.  Each (arm, seed) is keyed by :func:`clamp.study.keys.run_key` and every run folder
of the study's arms (every seed on disk, selected or not) is compared with the current
configuration (:func:`clamp.study.keys.same_run`):

- **same run**: finished or diverged ones are skipped, others resume from their last checkpoint;
- **another configuration, not finished** (pending, running, failed): moved aside to
  ``runs/.stale/<arm>/seed<seed>-<old key>/`` and listed; nothing is deleted;
- **another configuration, finished or diverged, selected**: a conflict, unless
  ``--replace`` is given, which moves it aside the same way and trains the current one;
- **another configuration, not selected** (a partial rerun with ``--arms``/``--seeds``
  after an edit): always a conflict, since the folder would otherwise hold both.

Conflicts stop ``clamp run`` before training with one message naming ``--out`` and
``--replace`` (exit 2).  Runs of an arm that start from the same point are packed onto the
run axis (``pack=False`` trains each alone); :func:`plan` reads the folder only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from clamp.execution.pack import PackJob, RunSpec
from clamp.model.foreign import is_foreign
from clamp.fingerprint import changed_code
from clamp.store import checkpoints, read_json, run_dir, run_seeds
from clamp.study.design import Study
from clamp.study.keys import (arm_code, arm_record, legacy_key, pack_independent, recorded_code, run_key, same_run,
                              stop_after)

DONE = ("finished", "diverged")
STALE_DIR = ".stale"


@dataclass(frozen=True, kw_only=True)
class Existing:
    """A run folder on disk and how it relates to the current configuration."""

    arm: str
    seed: int
    status: str
    old_key: str
    selected: bool
    why: str  # one phrase: what differs, when it can be told


@dataclass(frozen=True, kw_only=True)
class Survey:
    """Existing runs, sorted: the ones that match, the ones to move aside, and the conflicts.

    ``accepted``: finished runs whose code is unknown (written before clamp recorded code fingerprints)
    and that ``--accept-unknown-code`` lets stand: ``(arm, seed, the fingerprints they are accepted for)``.
    """

    matched: dict[tuple[str, int], dict]
    stale: tuple[Existing, ...]
    conflicts: tuple[Existing, ...]
    accepted: tuple[tuple[str, int, dict], ...] = ()


def _short(v: object, width: int = 40) -> str:
    text = repr(v)
    return text if len(text) <= width else text[: width - 3] + "..."


def _what_differs(study, arm, rec: dict) -> str:
    """A short phrase naming the first top-level difference between a stored run and the arm now."""
    old = rec.get("config")
    if not pack_independent(rec):
        return ("trained before clamp updated each run of a pack on its own (key version "
                f"{rec.get('key_version', 1)}: its numbers depended on the runs it was packed with)")
    if not isinstance(old, dict):
        return "recorded with another key"
    new = arm_record(study, arm)
    code = changed_code(recorded_code(rec), new.get("code") or {})
    diffs = [code] if code else []
    for part in ("model", "task", "train", "interventions", "schedule"):
        a, b = old.get(part), new.get(part)
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if k != "device" and a.get(k) != b.get(k):
                    diffs.append(f"{part}.{k} {_short(a.get(k))} -> {_short(b.get(k))}")
        elif a != b:
            diffs.append(f"{part} changed")
    if not diffs:
        return "recorded with another key"
    text = "; ".join(diffs[:2]) + (f" (+{len(diffs) - 2} more)" if len(diffs) > 2 else "")
    return text if len(text) < 200 else text[:197] + "..."


def survey(study, study_dir: str | Path, selected: Sequence, *, replace: bool = False,
           accept_unknown_code: bool = False) -> Survey:
    """Compare every run folder of the study's arms with the current configuration (reads only).

    ``accept_unknown_code``: a finished run that matches but for its code being unknown (it was written
    before clamp recorded code fingerprints) is kept, and listed in ``accepted``.
    """
    study_dir = Path(study_dir)
    chosen = {(arm.name, int(seed)) for arm, seed in selected}
    matched: dict[tuple[str, int], dict] = {}
    stale: list[Existing] = []
    conflicts: list[Existing] = []
    accepted: list[tuple[str, int, dict]] = []
    for arm in study.arms:
        code = arm_code(study, arm)
        for seed in sorted(set(run_seeds(study_dir, arm.name)) | {s for a, s in chosen if a == arm.name}):
            rec = read_json(run_dir(study_dir, arm.name, seed) / "run.json")
            if rec is None:
                continue
            key, legacy = run_key(study, arm, seed), legacy_key(study, arm, seed)
            if same_run(rec, key=key, legacy=legacy, code=code):
                matched[(arm.name, seed)] = rec
                continue
            if accept_unknown_code and code and recorded_code(rec) is None and rec.get("status") in DONE \
                    and same_run(rec, key=run_key(study, arm, seed, with_code=False), legacy=legacy):
                matched[(arm.name, seed)] = rec
                accepted.append((arm.name, seed, code))
                continue
            status = str(rec.get("status", "unknown"))
            e = Existing(arm=arm.name, seed=seed, status=status, old_key=str(rec.get("hash", "unknown")),
                         selected=(arm.name, seed) in chosen, why=_what_differs(study, arm, rec))
            if e.selected and (status not in DONE or replace):
                stale.append(e)
            elif not e.selected and status not in DONE and not _has_work(study_dir, e):
                stale.append(e)  # a pending record with nothing computed: move it aside, no need to ask
            else:
                conflicts.append(e)
    return Survey(matched=matched, stale=tuple(stale), conflicts=tuple(conflicts), accepted=tuple(accepted))


def _has_work(study_dir: Path, e: Existing) -> bool:
    folder = run_dir(study_dir, e.arm, e.seed)
    return (folder / "metrics.csv").is_file() or any((folder / "checkpoints").glob("*.pt"))


def conflict_message(study_dir: str | Path, conflicts: Sequence[Existing]) -> str:
    """One message naming the runs in the way, why, and the two fixes."""
    lines = [f"{study_dir} already holds runs of another configuration of this study:"]
    for e in conflicts[:8]:
        lines.append(f"  {e.arm}/seed{e.seed} ({e.status}{'' if e.selected else ', not selected'}): {e.why}")
    if len(conflicts) > 8:
        lines.append(f"  ... and {len(conflicts) - 8} more")
    unselected = any(not e.selected for e in conflicts)
    fix = ("Fix: write these results to another folder with --out DIR"
           + (", or rerun every arm and seed (drop --arms/--seeds/--set seeds) with --replace"
              if unselected else
              ", or pass --replace to move the old runs to runs/.stale/ (nothing is deleted) and train this configuration")
           + ".")
    if unselected:
        lines.append("A partial rerun would leave runs of two configurations under one arm name, "
                     "and the statistics would pool them.")
    lines.append(fix)
    return "\n".join(lines)


def move_aside(study_dir: str | Path, e: Existing) -> Path:
    """Move a run folder to ``runs/.stale/<arm>/seed<seed>-<old key>[-n]/``; returns where it went."""
    src = run_dir(study_dir, e.arm, e.seed)
    base = Path(study_dir) / "runs" / STALE_DIR / e.arm
    base.mkdir(parents=True, exist_ok=True)
    dest = base / f"seed{e.seed}-{e.old_key}"
    n = 1
    while dest.exists():
        n += 1
        dest = base / f"seed{e.seed}-{e.old_key}-{n}"
    os.replace(src, dest)
    return dest


@dataclass(frozen=True)
class Plan:
    """What a ``clamp run`` will do: packs to train, runs to skip, runs of another configuration to move aside.

    ``conflicts`` are finished runs of another configuration that this invocation may not
    replace (see :func:`survey`); :func:`run_study` refuses to start while any remain.
    """

    jobs: tuple[PackJob, ...]
    skipped: tuple[tuple[str, int, str], ...]  # (arm, seed, status)
    stale: tuple[Existing, ...]
    selected: int
    conflicts: tuple[Existing, ...] = ()
    accepted: tuple[tuple[str, int, dict], ...] = ()  # finished runs of unknown code kept by --accept-unknown-code


def plan(study: Study, study_dir: Path, runs: Sequence, *, pack: bool = True, replace: bool = False,
         accept_unknown_code: bool = False) -> Plan:
    """Decide, for each selected (arm, seed), whether to skip, resume or start it; group into packs.

    Reads the results folder only; nothing is written or moved here.
    """
    groups: dict[tuple, list[RunSpec]] = {}
    skipped = []
    found = survey(study, study_dir, runs, replace=replace, accept_unknown_code=accept_unknown_code)
    records = {a.name: arm_record(study, a) for a in study.arms}
    for arm, seed in runs:
        folder = run_dir(study_dir, arm.name, seed)
        rec = found.matched.get((arm.name, int(seed)))
        start = None
        if rec is not None and rec.get("status") in DONE:
            skipped.append((arm.name, seed, rec["status"]))
            continue
        if rec is not None:
            points = set(records[arm.name]["schedule"]["checkpoints"])
            have = [s for s in checkpoints(folder) if s in points]
            start = max(have) if have else None
        spec = RunSpec(arm=arm.name, seed=int(seed), hash=run_key(study, arm, seed), folder=str(folder.resolve()))
        key = (arm.name, start) if pack and not is_foreign(arm.model) else (arm.name, start, seed)  # foreign: one run each
        groups.setdefault(key, []).append(spec)
    jobs = []
    for i, (key, specs) in enumerate(groups.items()):
        arm = study.arm(key[0])
        rec = records[arm.name]
        jobs.append(PackJob(
            job_id=i, arm=arm.name, model=rec["model"], task=rec["task"], train=rec["train"],
            interventions=rec["interventions"], runs=tuple(specs),
            checkpoints=tuple(rec["schedule"]["checkpoints"]), extra_evals=tuple(rec["schedule"]["extra_evals"]),
            resume_from=key[1], record=rec, metrics=tuple(rec.get("metrics", ())), stop_after=stop_after(study),
        ))
    return Plan(jobs=tuple(jobs), skipped=tuple(skipped), stale=found.stale, selected=len(runs),
                conflicts=found.conflicts, accepted=found.accepted)


def job_label(job: PackJob) -> str:
    seeds = [r.seed for r in job.runs]
    s = f"s{seeds[0]}" if len(seeds) == 1 else f"s{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else "s" + ",".join(map(str, seeds))
    return f"{job.arm} {s}"


__all__ = ["Plan", "job_label", "plan", "DONE", "STALE_DIR", "Existing", "Survey", "conflict_message", "move_aside", "survey"]
