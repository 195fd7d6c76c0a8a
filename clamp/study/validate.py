"""Checks a study must pass before anything is trained or written: schedules, devices, output folders.

Why this file exists: each mistake below used to be accepted and then either trained
something other than what was asked for (an ``eval_every`` longer than the run was
silently replaced by another cadence) or ended in a traceback half-way (a CUDA device on
a CPU-only torch, ``--out`` under a regular file, a read-only folder).  Each check raises
one :class:`~clamp.errors.ConfigError` naming the problem and the fix; ``clamp`` prints
it and exits with status 2 before training.

torch is imported only to check a device other than the CPU.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

from clamp.errors import ConfigError

if TYPE_CHECKING:
    from clamp.study.design import Study


def require_model_and_task(arm) -> None:  # noqa: ANN001 - an Arm being built
    """An arm must say which model and task it trains: no default is substituted without a word."""
    for what, example in (("model", "clamp.ModelConfig(n_layers=2, n_heads=8, d_model=64)"),
                          ("task", "clamp.FewShotConfig()")):
        if getattr(arm, what) is None:
            raise ConfigError(f"Arm {arm.name!r} has no {what}=; every arm names its {what}, e.g. {what}={example} "
                              "(those are Singh et al.'s defaults).")


def check_schedule(study: Study) -> None:
    """Reject a schedule that cannot be carried out as written (every length in sequences seen).

    A checkpoint cadence, held-out cadence or dense window that reaches past a shortened run
    (``--set n_sequences=2000`` for a smoke test) is allowed: it only has fewer points.

    Example:
        >>> # Study(..., n_sequences=1_000, eval_every=5_000) -> ConfigError naming eval_every
    """
    n = study.n_sequences
    name = f"Study {study.name!r}"
    if study.eval_every > n:
        raise ConfigError(f"{name}: eval_every={study.eval_every:,} is longer than the run (n_sequences={n:,}), so "
                          f"only the start and the end would be evaluated; give eval_every <= {n:,}.")
    for d in study.dense:
        span = f"Dense(start={d.start:,}, stop={d.stop:,})"
        for what in ("eval_every", "checkpoint_every"):
            v = getattr(d, what)
            if v is not None and v > d.stop - d.start:
                raise ConfigError(f"{name}: {span} has {what}={v:,}, longer than the window itself "
                                  f"({d.stop - d.start:,} sequences); give a smaller {what} or a wider window.")
    for arm in study.arms:
        if arm.batch_size > n:
            raise ConfigError(f"{name}: arm {arm.name!r} has batch_size={arm.batch_size} but the run is only "
                              f"{n:,} sequences long; give a longer run or a smaller batch.")
        if arm.warmup_sequences > n:
            raise ConfigError(f"{name}: arm {arm.name!r} has warmup_sequences={arm.warmup_sequences:,}, longer than "
                              f"the run (n_sequences={n:,}); give at most {n:,}.")


def check_device(device: str, where: str = "device") -> None:
    """Reject a device this machine's torch cannot use (``"cuda"`` on a CPU-only build, a missing GPU index).

    Example:
        >>> check_device("cpu")
    """
    if device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"{where}={device!r} is not a device name ({e}); use 'cpu', 'cuda' or 'cuda:0'.") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch" if torch.version.cuda is None else "no visible CUDA device"
            raise ConfigError(f"{where}={device!r} but this machine has {build}; use device='cpu', or install a "
                              "CUDA build of torch on a machine with a GPU.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{where}={device!r} but only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1}); "
                              "pick one of those.")
        return
    if dev.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return
    raise ConfigError(f"{where}={device!r} is not available here; use 'cpu' or 'cuda'.")


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


__all__ = ["check_device", "check_output_folder", "check_schedule", "require_model_and_task"]
