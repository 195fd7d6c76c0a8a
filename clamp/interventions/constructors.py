"""Convenience constructors for the interventions a clamping study uses most.

Why this file exists: the kinds in :mod:`clamp.interventions.kinds` are general
(a site, heads, positions, a value); a study arm mostly needs a few named
cases -- Singh et al.'s knockout, match, layer-1 and copy clamps, a
previous-token or uniform pattern -- with a derived name and default windows.
These functions build those specs and nothing else (no torch, no nnsight), and
are re-exported by :mod:`clamp.interventions`.

Example:
    >>> knockout_heads(layer=1, keep=[0]).name
    'knockout_L1_v_keep0'
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from clamp.errors import ConfigError
from clamp.interventions.kinds.ablations import TARGET_HOOK, Knockout, Method, Target
from clamp.interventions.kinds.singh2024 import IdealLayer1, PerfectCopy
from clamp.interventions.kinds.clamps import PatternClamp
from clamp.interventions.spec import Intervention, Window


Windows = Sequence["Window | dict | Sequence[int | None]"]


def _common(name: str, windows: Windows | None) -> dict:
    return {"name": name, "windows": (Window(),) if windows is None else tuple(windows)}


def knockout_heads(layer: int = 1, *, keep: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                   target: Target = "values", method: Method = "zero", name: str = "",
                   windows: Windows | None = None) -> Knockout:
    """Knock out heads of ``layer`` (Singh et al.: zero the values of all layer-2 heads but ``keep``).

    Example:
        >>> knockout_heads(layer=1, keep=[0]).site
        'blocks.1.attn.hook_v'
    """
    if (keep is None) == (heads is None):
        raise ConfigError("knockout_heads: give exactly one of keep= (heads to spare) or heads= (heads to knock out).")
    return Knockout(site=f"blocks.{layer}.attn.{TARGET_HOOK[target]}", heads=heads, keep=keep, method=method,
                    **_common(name, windows))


def prev_token_pattern_clamp(layer: int = 0, head: int = 0, *, strength: float = 1.0, name: str = "",
                             windows: Windows | None = None) -> PatternClamp:
    """Clamp one head's pattern to the perfect previous-token pattern.

    Example:
        >>> prev_token_pattern_clamp(layer=0, head=2).heads
        (2,)
    """
    return PatternClamp(layer=layer, heads=(head,), pattern="prev_token", strength=strength, **_common(name, windows))


def uniform_pattern_clamp(layer: int, head: int, *, name: str = "", windows: Windows | None = None) -> PatternClamp:
    """Clamp one head's pattern to uniform causal attention."""
    return PatternClamp(layer=layer, heads=(head,), pattern="uniform", **_common(name, windows))


def match_clamp(layer: int = 1, head: int = 0, *, strength: float = 1.0, name: str = "",
                windows: Windows | None = None) -> PatternClamp:
    """Singh et al.'s match clamp: the query row of one head gets the oracle induction pattern.

    Example:
        >>> match_clamp(layer=1, head=0).pattern
        'induction'
    """
    return PatternClamp(layer=layer, heads=(head,), pattern="induction", strength=strength, **_common(name, windows))


def ideal_layer1(layer: int = 1, *, name: str = "", windows: Windows | None = None) -> IdealLayer1:
    """Singh et al.'s layer-1 clamp (see :class:`IdealLayer1`)."""
    return IdealLayer1(layer=layer, **_common(name, windows))


def perfect_copy(layer: int = 1, head: int = 0, *, name: str = "", windows: Windows | None = None) -> PerfectCopy:
    """Singh et al.'s copy clamp (see :class:`PerfectCopy`)."""
    return PerfectCopy(layer=layer, head=head, **_common(name, windows))


def replace_windows(iv: Intervention, windows: Windows) -> Intervention:
    """The same intervention with other windows (its name unchanged).

    Example:
        >>> replace_windows(perfect_copy(), [(0, 100)]).windows
        (Window(start=0, stop=100),)
    """
    return dataclasses.replace(iv, windows=tuple(windows))


__all__ = ["Windows", "knockout_heads", "prev_token_pattern_clamp", "uniform_pattern_clamp", "match_clamp",
           "ideal_layer1", "perfect_copy", "replace_windows"]
