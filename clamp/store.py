"""The results folder: where each file of a study lives, how it is written safely, and how it is read.

Why this file exists: the runner, the worker processes, resume, the statistics, the report
and the notebook API all touch ``results/<study>/``.  The layout, the one ``metrics.csv``
writer (:func:`metric_rows_text` / :func:`append_metrics`) and the one ``metrics.csv``
reader (:func:`read_metric_rows`, with :func:`read_curve` and :func:`trigger_events` on
top) live here, below every stage, so that what one stage writes is what the others
read.  Every write goes through a temporary file and :func:`os.replace`, so a killed
process never leaves a half-written file behind (metrics rows are appended with one
``write`` call per evaluation, which a kill cannot split).  Metric names themselves are
built in :mod:`clamp.names`.  numpy only; no torch, no pandas.

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

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from clamp.errors import ConfigError
from clamp.names import TRIGGER_PREFIX

METRICS_COLUMNS = ("sequences_seen", "run", "metric", "value")
METRICS_HEADER = ",".join(METRICS_COLUMNS) + "\n"
ATTENTION_HEADER = "sequences_seen,run,layer,head,query,key,value\n"


def run_dir(study_dir: str | Path, arm: str, seed: int) -> Path:
    return Path(study_dir) / "runs" / arm / f"seed{seed}"


def seed_of(folder: str | Path) -> int | None:
    """The seed of a run folder (``seed<seed>``), or None for any other name.

    Example:
        >>> seed_of("runs/control/seed12"), seed_of("runs/control/.stale")
        (12, None)
    """
    m = re.fullmatch(r"seed(-?\d+)", Path(folder).name)
    return int(m.group(1)) if m else None


def run_seeds(study_dir: str | Path, arm: str) -> list[int]:
    """The seeds of the run folders found under ``runs/<arm>/``, sorted."""
    folder = Path(study_dir) / "runs" / arm
    found = (seed_of(p) for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ()
    return sorted(s for s in found if s is not None)


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


# --------------------------------------------------------------------------- metrics.csv: the one writer


def metric_rows_text(seen: int, run: int | str, metrics: Mapping[str, float]) -> str:
    r"""One evaluation of one run as ``metrics.csv`` rows: sorted by name, values as ``repr(float)``.

    Example:
        >>> metric_rows_text(64, 0, {"train/loss": 0.5, "fired/a,b": 1})
        '64,0,"fired/a,b",1.0\n64,0,train/loss,0.5\n'
    """
    return csv_text((seen, run, name, repr(float(metrics[name]))) for name in sorted(metrics))


def append_metrics(path: str | Path, seen: int, run: int | str, metrics: Mapping[str, float]) -> None:
    """Append one evaluation of one run to its ``metrics.csv`` (one ``write``: a kill cannot split it)."""
    append_text(path, metric_rows_text(seen, run, metrics))


# --------------------------------------------------------------------------- metrics.csv: the one reader


@dataclass(frozen=True)
class MetricRows:
    """The rows of a ``metrics.csv`` as columns, in file order.

    ``seen`` and ``value`` are float arrays (NaN where a field does not parse), ``run`` the run
    labels as written, ``metric`` the names.
    """

    seen: np.ndarray
    run: list[str]
    metric: list[str]
    value: np.ndarray

    def __len__(self) -> int:
        return len(self.metric)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_metric_rows(path: str | Path, *, metrics: Iterable[str] | None = None, up_to: float | None = None,
                     run: int | str | None = None) -> MetricRows:
    r"""Read a run's (or ``clamp train``'s) ``metrics.csv``: the one reader every stage uses.

    Rows with the wrong number of fields (never written by clamp) are skipped; a field that
    does not parse as a number reads as NaN, never as text.

    Args:
        path: the file (written by :func:`append_metrics`, header :data:`METRICS_HEADER`).
        metrics: keep only these names (default: all).
        up_to: keep only rows with ``sequences_seen <= up_to`` (resuming from a checkpoint).
        run: keep only this run label; a run's own file holds its rows only, so this matters only for a
            file that holds several runs (``clamp train``).

    Raises:
        ConfigError: the file's header is not ``sequences_seen,run,metric,value``.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> _ = p.write_text(METRICS_HEADER + "0,0,train/loss,0.7\n32,0,train/loss,0.2\n32,0,train/acc,x\n")
        >>> r = read_metric_rows(p, metrics=["train/loss"], up_to=32)
        >>> r.seen.tolist(), r.value.tolist()
        ([0.0, 32.0], [0.7, 0.2])
    """
    path = Path(path)
    wanted = None if metrics is None else set(metrics)
    label = None if run is None else str(run)
    seen: list[float] = []
    runs: list[str] = []
    names: list[str] = []
    values: list[float] = []
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is not None and tuple(header) != METRICS_COLUMNS:
            raise ConfigError(f"{path} has the header {','.join(header)!r}, not {METRICS_HEADER.strip()!r}; "
                              "it was not written by clamp (rerun the run, or fix the header).")
        for row in rows:
            if len(row) != 4:
                continue
            x, r, name, v = row
            if wanted is not None and name not in wanted:
                continue
            if label is not None and r != label:
                continue
            xf = _number(x)
            if up_to is not None and not xf <= up_to:
                continue
            seen.append(xf)
            runs.append(r)
            names.append(name)
            values.append(_number(v))
    return MetricRows(np.asarray(seen, float), runs, names, np.asarray(values, float))


def read_curve(path: str | Path, metric: str, *, up_to: float | None = None) -> tuple[list[int], list[float]]:
    r"""One metric of a run's ``metrics.csv`` as ``(sequences seen, values)``; empty lists without a file.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> _ = p.write_text(METRICS_HEADER + "0,0,train/loss,0.7\n32,0,train/loss,0.2\n")
        >>> read_curve(p, "train/loss", up_to=0), read_curve(p.parent / "none.csv", "train/loss")
        (([0], [0.7]), ([], []))
    """
    if not Path(path).exists():
        return [], []
    rows = read_metric_rows(path, metrics=[metric], up_to=up_to)
    keep = np.isfinite(rows.seen)
    return [int(x) for x in rows.seen[keep]], [float(v) for v in rows.value[keep]]


def trigger_events(path: str | Path, up_to: float) -> dict[str, int]:
    r"""The first evaluation (<= ``up_to``) at which each ``trigger/...`` row of a run's ``metrics.csv`` reads 1.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> _ = p.write_text(METRICS_HEADER + "0,0,trigger/ko/start,0.0\n32,0,trigger/ko/start,1.0\n")
        >>> trigger_events(p, up_to=64), trigger_events(p, up_to=0)
        ({'trigger/ko/start': 32}, {})
    """
    out: dict[str, int] = {}
    if not Path(path).exists():
        return out
    rows = read_metric_rows(path, up_to=up_to)
    for x, name, v in zip(rows.seen, rows.metric, rows.value):
        if name.startswith(TRIGGER_PREFIX) and v >= 0.5 and (name not in out or x < out[name]):
            out[name] = int(x)
    return out


def last_evaluation(path: str | Path) -> int | None:
    """Sequences seen at the last evaluation written to a ``metrics.csv`` (read from its tail), or None.

    Cheap on a long file: a progress poll reads only its last few hundred bytes.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(size - 512, 0))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return None
    first = lines[-1].split(",", 1)[0] if lines else ""
    return int(first) if first.isdigit() else None


# --------------------------------------------------------------------------- a full disk


_DISK_FULL_WORDS = ("no space left on device", "disk quota exceeded", "unexpected pos", "file write failed")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the disk filling up.

    An ``OSError`` with ``ENOSPC``/``EDQUOT`` anywhere in the chain, or the ``RuntimeError`` torch raises when
    its zip writer runs out of space (``[enforce fail at inline_container.cc] unexpected pos``).

    Example:
        >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device")), is_disk_full(ValueError("x"))
        (True, False)
        >>> is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"))
        True
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(e, (OSError, RuntimeError)) and any(w in str(e).lower() for w in _DISK_FULL_WORDS):
            return True
        e = e.__cause__ or e.__context__
    return False


DISK_FULL = "no space left on the device holding the results"


# --------------------------------------------------------------------------- the output folder


def check_output_folder(out: str | Path) -> None:
    """Reject an output folder that cannot be created or written, before anything is trained.

    Only reads (and, for a folder that exists, creates and removes one probe file).
    """
    out = Path(out)
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"--out {out}: {probe} is a file, not a folder, so results cannot be written under it; "
                          "give another --out, or move that file.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {probe} is not writable by this user; give a folder you can write to "
                          "with --out, or change its permissions.")
    if probe == out or out.is_dir():
        try:
            fd = os.open(out / f".clamp-probe-{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(out / f".clamp-probe-{os.getpid()}")
        except OSError as e:
            raise ConfigError(f"--out {out}: cannot write there ({os.strerror(e.errno) if e.errno else e}); "
                              + ("free some space, or " if e.errno in (errno.ENOSPC, errno.EDQUOT) else "")
                              + "give another folder with --out.") from None


# --------------------------------------------------------------------------- the study folder's lock


@contextlib.contextmanager
def study_lock(study_dir: Path, wait: float = 20.0) -> Iterator[Path]:
    """Hold an exclusive lock on the study folder; yields the workers' lock file.

    Worker processes hold a shared lock on ``.workers.lock``; a new run waits
    (up to ``wait`` seconds) until the workers of a killed run have gone.
    """
    fd = os.open(study_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    wfd = os.open(study_dir / ".workers.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.time() + wait
    try:
        for f, what in ((fd, "another `clamp run`"), (wfd, "worker processes of an earlier `clamp run`")):
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.time() > deadline:
                        raise ConfigError(f"{study_dir} is in use by {what}; wait for it to end, or use --out.") from None
                    time.sleep(0.2)
        fcntl.flock(wfd, fcntl.LOCK_UN)
        yield study_dir / ".workers.lock"
    finally:
        os.close(wfd)
        os.close(fd)
