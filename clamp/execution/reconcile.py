"""What a results folder already holds, against what the study now asks for.

Why this file exists: a rerun must never delete finished work nor leave runs of two
configurations under one arm name.  Before anything is written, every run folder of
the study's arms (every seed on disk, selected or not) is compared with the current
configuration by its key (:func:`clamp.study.keys.same_run`):

- **same run**: finished or diverged ones are skipped, others resume;
- **another configuration, not finished** (pending, running, failed): moved aside to
  ``runs/.stale/<arm>/seed<seed>-<old key>/`` and listed; nothing is deleted;
- **another configuration, finished or diverged, selected**: a conflict, unless
  ``--replace`` is given, which moves it aside the same way and trains the current one;
- **another configuration, not selected** (a partial rerun with ``--arms``/``--seeds``
  after an edit): always a conflict, since the folder would otherwise hold both.

Conflicts stop ``clamp run`` before training with one message naming ``--out`` and
``--replace`` (exit 2).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from clamp.store import read_json, run_dir
from clamp.study.keys import legacy_key, run_key, same_run

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
    """Existing runs, sorted: the ones that match, the ones to move aside, and the conflicts."""

    matched: dict[tuple[str, int], dict]
    stale: tuple[Existing, ...]
    conflicts: tuple[Existing, ...]


def _seeds_on_disk(study_dir: Path, arm: str) -> set[int]:
    folder = study_dir / "runs" / arm
    out: set[int] = set()
    if folder.is_dir():
        for p in folder.iterdir():
            m = re.fullmatch(r"seed(\d+)", p.name)
            if m and p.is_dir():
                out.add(int(m.group(1)))
    return out


def _short(v: object, width: int = 40) -> str:
    text = repr(v)
    return text if len(text) <= width else text[: width - 3] + "..."


def _what_differs(study, arm, rec: dict) -> str:  # noqa: ANN001
    """A short phrase naming the first top-level difference between a stored run and the arm now."""
    from clamp.study.keys import arm_record

    old = rec.get("config")
    if not isinstance(old, dict):
        return "recorded with another key"
    new = arm_record(study, arm)
    diffs = []
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
    return text if len(text) < 160 else text[:157] + "..."


def survey(study, study_dir: str | Path, selected: Sequence, *, replace: bool = False) -> Survey:  # noqa: ANN001
    """Compare every run folder of the study's arms with the current configuration (reads only)."""
    study_dir = Path(study_dir)
    chosen = {(arm.name, int(seed)) for arm, seed in selected}
    matched: dict[tuple[str, int], dict] = {}
    stale: list[Existing] = []
    conflicts: list[Existing] = []
    for arm in study.arms:
        for seed in sorted(_seeds_on_disk(study_dir, arm.name) | {s for a, s in chosen if a == arm.name}):
            rec = read_json(run_dir(study_dir, arm.name, seed) / "run.json")
            if rec is None:
                continue
            if same_run(rec, key=run_key(study, arm, seed), legacy=legacy_key(study, arm, seed)):
                matched[(arm.name, seed)] = rec
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
    return Survey(matched=matched, stale=tuple(stale), conflicts=tuple(conflicts))


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


__all__ = ["DONE", "STALE_DIR", "Existing", "Survey", "conflict_message", "move_aside", "survey"]
