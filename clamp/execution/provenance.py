"""Provenance: which code, packages, kernels and machine produced a run, and when.

Why this file exists: a number in a paper must be traceable to the code that made it.
Every ``run.json`` records the provenance of the attempt that wrote it (and keeps the
earlier attempts' when a run was resumed), and ``study.json`` keeps the history of
every ``clamp run`` invocation on the folder instead of being overwritten
(:func:`merge_study_record`).  Both carry a schema version.

Nothing here imports nnsight; torch is imported only by :func:`run_provenance`
(called where training runs).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

STUDY_SCHEMA = 2  # 1: study.json rewritten by each invocation (no "invocations")
RUN_SCHEMA = 2  # 1: run.json without provenance or key_version
PACKAGES = ("torch", "nnsight", "numpy", "scipy", "pandas", "matplotlib")
_PROVENANCE_KEYS = ("code_revision", "code_dirty", "versions", "machine", "command", "written_at", "study_file")


def now() -> str:
    """Local time with its UTC offset, to the second (``2026-12-02T16:30:00+0000``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def git_state(where: str | Path) -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the checkout holding ``where``; ``("unknown", None)`` outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown", None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def git_revision(where: str | Path) -> str:
    """``git rev-parse HEAD`` of the checkout holding ``where`` (``+dirty`` if modified), or ``"unknown"``."""
    rev, dirty = git_state(where)
    return rev + ("+dirty" if dirty else "")


def package_version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Versions of clamp, Python and the packages results depend on (read from metadata: nothing imported)."""
    import clamp

    out = {"clamp": clamp.__version__, "python": platform.python_version()}
    out.update({p: package_version(p) for p in PACKAGES})
    return out


def machine() -> dict:
    """Host, platform, processor and core count (no torch needed)."""
    return {"host": socket.gethostname(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cores": os.cpu_count()}


def code() -> dict:
    import clamp

    rev, dirty = git_state(Path(clamp.__file__).parent)
    return {"code_revision": rev + ("+dirty" if dirty else ""), "code_dirty": dirty}


def run_provenance() -> dict:
    """Provenance of one attempt of a run, taken in the process that trains it (kernels included)."""
    import torch

    from clamp.model import native

    m = machine()
    m.update(torch_threads=torch.get_num_threads(),
             cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return {**code(), "versions": versions(), "kernels": native.status(), "machine": m,
            "pid": os.getpid(), "started_at": now()}


def invocation(study_file: str | Path | None = None) -> dict:
    """Provenance of one ``clamp run`` invocation, for ``study.json``."""
    return {**code(), "versions": versions(), "machine": machine(),
            "command": " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)),
            "study_file": str(study_file) if study_file else None, "written_at": now()}


def merge_study_record(old: dict | None, new: dict, this: dict) -> dict:
    """The ``study.json`` to write: ``new`` (the resolved study now) with the invocation history kept.

    The top-level provenance fields describe the latest invocation ``this``; ``invocations``
    lists every invocation, oldest first; a ``study.json`` written before schema 2 (no history)
    becomes the first entry.
    """
    history: list[dict] = []
    if old:
        if isinstance(old.get("invocations"), list):
            history = list(old["invocations"])
        else:
            history = [{k: old[k] for k in _PROVENANCE_KEYS if k in old} | {"schema_version": old.get("schema_version", 1)}]
    out = dict(new)
    out.update({k: v for k, v in this.items() if k in _PROVENANCE_KEYS})
    out["schema_version"] = STUDY_SCHEMA
    out["invocations"] = history + [this]
    return out
