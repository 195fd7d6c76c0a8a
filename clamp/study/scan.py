"""Scans: one specification expanded into one arm per component (head, layer, subcircuit), plus the control.

Why this file exists: isolating the components that drive the phase change
means perturbing each one in turn -- every head of a layer, every layer, or
named candidate subcircuits -- and ranking them by how much the perturbation
delays (or prevents) the phase change.  Writing those arms by hand is error
prone; :func:`scan` writes them from one base arm.  Each scan arm is the base
arm plus the perturbation of one component in the given windows (fixed or
triggered, :class:`clamp.When`), named ``<prefix>__<component>``: that name is
how the statistics find the scan again (:mod:`clamp.analysis.stats.scan` ranks
the components with multiple-comparison control over the scan, and draws the
layer x head heatmap for components named ``L<l>H<h>``).

Example:
    >>> from clamp.model.config import ModelConfig
    >>> from clamp.study.design import Arm
    >>> from clamp.tasks import FewShotConfig
    >>> control = Arm(name="control", model=ModelConfig(n_layers=2, n_heads=2, d_model=8), task=FewShotConfig())
    >>> arms = scan(control=control, components=heads(layer=0, n_heads=2))
    >>> [a.name for a in arms]
    ['control', 'ko__L0H0', 'ko__L0H1']
    >>> [iv.name for iv in arms[1].interventions]
    ['ko_L0H0']
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from clamp.errors import ConfigError

SEP = "__"  # between a scan's prefix and its component in an arm name
ACTIONS = ("knockout", "uniform", "prev_token")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, kw_only=True)
class Component:
    """A set of attention heads perturbed together, named (``L0H3``, ``L1``, ``prev_token_heads``).

    Example:
        >>> Component(name="L0H3", heads=((0, 3),)).layers()
        (0,)
    """

    name: str
    heads: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple((int(l), int(h)) for l, h in self.heads))
        if not _NAME.match(self.name) or SEP in self.name:
            raise ConfigError(f"scan component name {self.name!r} must use letters, digits, '_' and '-' only, "
                              f"without {SEP!r}.")
        if not self.heads:
            raise ConfigError(f"scan component {self.name!r} has no heads; give at least one (layer, head).")
        if any(l < 0 or h < 0 for l, h in self.heads):
            raise ConfigError(f"scan component {self.name!r}: layers and heads must be >= 0, got {list(self.heads)}.")

    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({l for l, _ in self.heads}))

    def heads_in(self, layer: int) -> tuple[int, ...]:
        return tuple(sorted(h for l, h in self.heads if l == layer))


def heads(*, layer: int, n_heads: int) -> tuple[Component, ...]:
    """Every head of one layer, one component each (``L<layer>H<h>``).

    Example:
        >>> [c.name for c in heads(layer=1, n_heads=3)]
        ['L1H0', 'L1H1', 'L1H2']
    """
    return tuple(Component(name=f"L{layer}H{h}", heads=((layer, h),)) for h in range(n_heads))


def layers(*, n_layers: int, n_heads: int) -> tuple[Component, ...]:
    """Every layer, all its heads together (``L<l>``).

    Example:
        >>> [c.name for c in layers(n_layers=2, n_heads=2)]
        ['L0', 'L1']
    """
    return tuple(Component(name=f"L{l}", heads=tuple((l, h) for h in range(n_heads))) for l in range(n_layers))


def subcircuits(named: Mapping[str, Iterable[tuple[int, int]]]) -> tuple[Component, ...]:
    """Named sets of heads, e.g. ``{"prev_token": [(0, 1), (0, 5)], "induction": [(1, 0)]}``."""
    return tuple(Component(name=k, heads=tuple(v)) for k, v in named.items())


def _interventions(action: str | Callable, comp: Component, prefix: str, windows: Sequence[Any] | None) -> list[Any]:
    from clamp.interventions import knockout_heads, prev_token_pattern_clamp, uniform_pattern_clamp

    if callable(action):
        out = list(action(comp, windows))
        if not out:
            raise ConfigError(f"scan action {action!r} returned no intervention for component {comp.name!r}.")
        return out
    if action not in ACTIONS:
        raise ConfigError(f"scan action={action!r} is unknown; choose one of {list(ACTIONS)} or give a function "
                          "f(component, windows) -> [interventions].")
    if action == "knockout":
        return [knockout_heads(layer=l, heads=list(comp.heads_in(l)), windows=windows,
                               name=f"{prefix}_{comp.name}" + (f"_L{l}" if len(comp.layers()) > 1 else ""))
                for l in comp.layers()]
    make = uniform_pattern_clamp if action == "uniform" else prev_token_pattern_clamp
    return [make(layer=l, head=h, windows=windows, name=f"{prefix}_{comp.name}" + ("" if len(comp.heads) == 1 else f"_L{l}H{h}"))
            for l, h in comp.heads]


def scan(*, control: Any, components: Iterable[Component], action: str | Callable = "knockout",
         windows: Sequence[Any] | None = None, prefix: str = "ko", include_control: bool = True) -> tuple[Any, ...]:
    """The arms of a scan: ``control`` (if ``include_control``) and, per component, ``control`` plus its perturbation.

    Args:
        control: the base arm (its model, task, optimiser and interventions are kept in every scan arm).
        components: what to perturb, one arm each (:func:`heads`, :func:`layers`, :func:`subcircuits`).
        action: ``"knockout"`` (zero the heads' values), ``"uniform"`` / ``"prev_token"`` (clamp each head's
            attention pattern), or a function ``f(component, windows) -> [interventions]``.
        windows: when the perturbation is on (fixed or triggered windows); None: the whole run.
        prefix: names the scan: arms are ``<prefix>__<component>``.
        include_control: put ``control`` first in the returned arms.

    Returns:
        A tuple of :class:`~clamp.study.design.Arm`, to pass (or add) to ``Study(arms=...)``.
    """
    if not _NAME.match(prefix) or SEP in prefix:
        raise ConfigError(f"scan prefix {prefix!r} must use letters, digits, '_' and '-' only, without {SEP!r}.")
    comps = tuple(components)
    if not comps:
        raise ConfigError("scan got no components; give e.g. clamp.study.scan.heads(layer=0, n_heads=8).")
    names = [c.name for c in comps]
    if len(set(names)) != len(names):
        raise ConfigError(f"scan components have duplicate names {sorted({n for n in names if names.count(n) > 1})}.")
    arms = [control] if include_control else []
    what = action if isinstance(action, str) else getattr(action, "__name__", "custom")
    for c in comps:
        ivs = tuple(control.interventions) + tuple(_interventions(action, c, prefix, windows))
        arms.append(dataclasses.replace(control, name=f"{prefix}{SEP}{c.name}", interventions=ivs, factors={},
                                        description=f"scan {prefix}: {what} {c.name} "
                                                    f"({', '.join(f'L{l}H{h}' for l, h in c.heads)}) on top of {control.name}"))
    return tuple(arms)


def scan_arm(name: str) -> tuple[str, str] | None:
    """``(prefix, component)`` of a scan arm's name, or None.

    Example:
        >>> scan_arm("ko__L1H3"), scan_arm("control")
        (('ko', 'L1H3'), None)
    """
    if SEP not in name:
        return None
    prefix, comp = name.split(SEP, 1)
    return (prefix, comp) if prefix and comp else None


__all__ = ["Component", "heads", "layers", "subcircuits", "scan", "scan_arm", "SEP", "ACTIONS"]

# the names ``import clamp`` exports (clamp.scan_heads(...), ...)
scan_heads, scan_layers, scan_subcircuits = heads, layers, subcircuits
