"""Deterministic fault injection, so that crash and resume paths are tested at a known point.

Why this file exists: a worker killed by the kernel (out of memory, a segfault) or a
runner killed mid-study must leave results that a rerun resumes; tests must be able
to cause that at an exact place instead of racing a timer.  Set the environment
variable ``CLAMP_FAULT`` to one or more ``;``-separated rules::

    kill:<arm>:<seed>:<seq>    SIGKILL the process training run (arm, seed) once it has seen >= seq sequences
    raise:<arm>:<seed>:<seq>   raise RuntimeError there instead

``*`` matches any arm or seed.  Unset (the normal case) it costs one dictionary lookup per step.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Callable, Sequence

from clamp.errors import ConfigError

ENV = "CLAMP_FAULT"


@dataclass(frozen=True, kw_only=True)
class Fault:
    action: str
    arm: str
    seed: str
    seq: int

    def matches(self, arm: str, seeds: Sequence[int], seen: int) -> bool:
        return (self.arm in ("*", arm) and (self.seed == "*" or int(self.seed) in seeds) and seen >= self.seq)


def parse(text: str) -> tuple[Fault, ...]:
    """The rules in ``text`` (see the module docstring); a malformed rule raises :class:`ConfigError`."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        bits = part.split(":")
        if len(bits) != 4 or bits[0] not in ("kill", "raise") or not bits[3].isdigit() or not (bits[2] == "*" or bits[2].isdigit()):
            raise ConfigError(f"{ENV}={text!r}: rule {part!r} must look like kill:<arm>:<seed>:<seq> or raise:<arm>:<seed>:<seq>.")
        out.append(Fault(action=bits[0], arm=bits[1], seed=bits[2], seq=int(bits[3])))
    return tuple(out)


def injector(arm: str, seeds: Sequence[int], before_kill: Callable[[], None] | None = None) -> Callable[[int], None] | None:
    """A function of sequences seen that fires the matching rule, or None when ``CLAMP_FAULT`` names none.

    ``before_kill`` runs just before a SIGKILL (e.g. to flush a progress queue).
    """
    rules = [f for f in parse(os.environ.get(ENV, "")) if f.arm in ("*", arm)]
    if not rules:
        return None

    def check(seen: int) -> None:
        for f in rules:
            if f.matches(arm, seeds, seen):
                if f.action == "raise":
                    raise RuntimeError(f"{ENV}: injected failure in {arm} at {seen} sequences seen")
                if before_kill is not None:
                    before_kill()
                os.kill(os.getpid(), signal.SIGKILL)

    return check
