"""The results folder: where each file of a study lives, and how it is written safely.

Why this file exists: the runner, the worker processes and the report all touch
``results/<study>/``; the layout is named once here, and every write goes
through a temporary file and :func:`os.replace`, so a killed process never
leaves a half-written file behind (metrics rows are appended with one
``write`` call per evaluation, which a kill cannot split).

Layout::

    results/<study>/
        study.json                     resolved study + history of invocations (provenance)
        summary.csv                    one row per run
        report.md                      index page: arms, seeds, statuses, links
        plots/*.png, plots/*.svg
        runs/<arm>/seed<seed>/
            run.json                   config, seeds, status, timings, error, key, provenance
            metrics.csv                sequences_seen,run,metric,value
            attention.csv              mean attention pattern at each checkpoint
            checkpoints/<seen>.pt      per-run trainer state (weights_only loadable)
        runs/.stale/<arm>/seed<seed>-<key>/   runs of an earlier configuration, moved aside (never deleted)
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

METRICS_HEADER = "sequences_seen,run,metric,value\n"
ATTENTION_HEADER = "sequences_seen,run,layer,head,query,key,value\n"


def run_dir(study_dir: str | Path, arm: str, seed: int) -> Path:
    return Path(study_dir) / "runs" / arm / f"seed{seed}"


def checkpoint_path(run_folder: str | Path, seen: int) -> Path:
    return Path(run_folder) / "checkpoints" / f"{seen:012d}.pt"


def checkpoints(run_folder: str | Path) -> dict[int, Path]:
    """Complete checkpoints of a run, by sequences seen (temporary files are ignored)."""
    folder = Path(run_folder) / "checkpoints"
    out = {}
    if folder.is_dir():
        for p in folder.glob("*.pt"):
            if p.stem.isdigit():
                out[int(p.stem)] = p
    return dict(sorted(out.items()))


_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_beside(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600 files; results are meant to be shared, so use the usual umask-based mode.
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (or a kill) sees the old file or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_temporaries(folder: str | Path) -> int:
    """Delete the ``.<name>.*.tmp`` files a killed writer left under ``folder``; returns how many.

    Only call this while holding the study lock (no writer can be active).
    """
    n = 0
    for p in Path(folder).rglob(".*.tmp"):
        if p.is_file():
            p.unlink()
            n += 1
    return n


def read_json(path: str | Path) -> dict | None:
    """The JSON object at ``path``, or None if it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` with a single ``write`` call (a kill cannot leave half of it)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = text.encode()
        written = os.write(fd, data)
        while written < len(data):  # only on exotic file systems
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    r"""Rows as CSV text (quoted by :mod:`csv` where a field holds a comma, quote or newline), ``\n``-terminated.

    Example:
        >>> csv_text([[0, "fired/a,b", 1.0]])
        '0,"fired/a,b",1.0\n'
    """
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def truncate_rows(path: str | Path, header: str, max_seen: int) -> None:
    """Keep only complete rows with ``sequences_seen <= max_seen`` (atomically); create the file if missing."""
    path = Path(path)
    keep = [header]
    if path.exists():
        with open(path) as f:
            lines = f.read().split("\n")
        for line in lines[1:-1]:  # the last piece is "" or an unterminated row
            first = line.split(",", 1)[0]
            if first.isdigit() and int(first) <= max_seen:
                keep.append(line + "\n")
    atomic_write_text(path, "".join(keep))
