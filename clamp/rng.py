"""Named random streams: one generator per named draw of a run, seeded from (seed, name) alone.

Why this file exists: the model's initialisation (each parameter its own stream, as Singh et
al.'s code splits its JAX keys) and the tasks' fixed draws (cluster centres, item subspaces)
must not depend on each other or on the order they are made in: changing one part of a
configuration leaves every other draw bit-identical.  Both stages use this one function.
"""

from __future__ import annotations

import hashlib

import torch


def stream(seed: int, name: str) -> torch.Generator:
    """A generator for one named random draw of a run: seeded from ``(seed, name)`` alone.

    Example:
        >>> a = torch.rand(2, generator=stream(0, "blocks.0.attn.W_Q.weight"))
        >>> torch.equal(a, torch.rand(2, generator=stream(0, "blocks.0.attn.W_Q.weight")))
        True
    """
    digest = hashlib.sha256(f"clamp/{int(seed)}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


__all__ = ["stream"]
