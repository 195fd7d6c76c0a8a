"""Moving a pack's files between the results folder and a worker that cannot see it.

Why this file exists: a Ray worker may run on a machine that does not share a file
system with the driver.  The driver sends a pack the files it resumes from (each
run's ``run.json``, ``metrics.csv``, ``attention.csv`` and the one checkpoint it
resumes at), the worker trains into a temporary folder and returns every file it
wrote, as bytes, and the driver writes them into ``results/<study>/runs/``
atomically (checkpoints first, ``run.json`` last), so a resumed study sees exactly
what a local run would have left, checkpoints included.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

from clamp.execution.pack import PackJob
from clamp.store import checkpoint_path

Files = list[dict[str, bytes]]  # per run of the pack: path relative to its folder -> contents
_SENT = ("run.json", "metrics.csv", "attention.csv")


def files_to_send(job: PackJob) -> Files:
    """What a worker needs from the results folder to start (or resume) ``job``."""
    out = []
    for spec in job.runs:
        folder = Path(spec.folder)
        files = {name: (folder / name).read_bytes() for name in _SENT if (folder / name).is_file()}
        if job.resume_from is not None:
            ck = checkpoint_path(folder, job.resume_from)
            files[str(ck.relative_to(folder))] = ck.read_bytes()
        out.append(files)
    return out


def unpack(job: PackJob, files: Files, root: str | Path) -> PackJob:
    """Write ``files`` under ``root`` (one folder per run) and return ``job`` pointed at them."""
    runs = []
    for i, (spec, run_files) in enumerate(zip(job.runs, files)):
        folder = Path(root) / f"run{i}"
        for rel, data in run_files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        folder.mkdir(parents=True, exist_ok=True)
        runs.append(replace(spec, folder=str(folder)))
    return replace(job, runs=tuple(runs))


def collect(local_job: PackJob, sent: Files) -> Files:
    """Every file the worker's runs hold now, except checkpoints it was sent and did not change."""
    out = []
    for spec, run_sent in zip(local_job.runs, sent):
        folder = Path(spec.folder)
        files = {}
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                rel = str(p.relative_to(folder))
                data = p.read_bytes()
                if rel.startswith("checkpoints/") and run_sent.get(rel) == data:
                    continue
                files[rel] = data
        out.append(files)
    return out


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_back(job: PackJob, files: Files) -> None:
    """Write a worker's returned files into the results folder: checkpoints, then tables, then ``run.json``.

    Checkpoints the worker removed (a fresh start clears them) are removed here too;
    those before the resume point, which the worker never saw, are kept.
    """
    for spec, run_files in zip(job.runs, files):
        folder = Path(spec.folder)
        order = sorted(run_files, key=lambda rel: (rel == "run.json", not rel.startswith("checkpoints/"), rel))
        for rel in order:
            if rel == "run.json":
                for p in (folder / "checkpoints").glob("*.pt"):
                    stale = job.resume_from is None or (p.stem.isdigit() and int(p.stem) > job.resume_from)
                    if stale and f"checkpoints/{p.name}" not in run_files:
                        p.unlink()
            _atomic_write_bytes(folder / rel, run_files[rel])
