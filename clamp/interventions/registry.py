"""The registry of intervention kinds: every built-in kind by its ``kind`` string, user kinds by import path.

Why this file exists: rebuilding an intervention from JSON (a worker, a resume, ``study.json``)
needs every kind; the kinds need the base class.  Here, above both :mod:`clamp.interventions.spec`
(the base class, where defining a kind registers it) and :mod:`clamp.interventions.kinds`
(the built-in kinds, all imported), neither has to import the other.
"""

from __future__ import annotations

from dataclasses import fields

import clamp.interventions.kinds  # noqa: F401 - imports (so registers) every built-in kind
from clamp.errors import ConfigError
from clamp.importpath import resolve
from clamp.interventions.spec import KINDS, Intervention


def builtin_kinds() -> dict[str, type[Intervention]]:
    """Class name -> class of every built-in kind (what :mod:`clamp.interventions` and :mod:`clamp` export)."""
    return {cls.__name__: cls for cls in KINDS.values()}


def intervention_from_dict(d: dict) -> Intervention:
    """Rebuild an intervention from :meth:`Intervention.to_dict` output.

    Built-in kinds are found by their kind string, user kinds by import path.
    Rejects unknown kinds and unknown keys with a :class:`ConfigError`.

    Example:
        >>> intervention_from_dict({"kind": "perfect_copy", "layer": 1, "head": 0}).name
        'perfect_copy_L1H0'
    """
    if not isinstance(d, dict):
        raise ConfigError(f"an intervention must be a dict with a 'kind' key, got {type(d).__name__}.")
    d = dict(d)
    kind = d.pop("kind", None)
    if isinstance(kind, str) and ":" in kind:
        cls = resolve(kind, "intervention kind")
        if not (isinstance(cls, type) and issubclass(cls, Intervention)):
            raise ConfigError(f"{kind!r} is not an Intervention subclass.")
    elif kind in KINDS:
        cls = KINDS[kind]
    else:
        raise ConfigError(f"unknown intervention kind {kind!r}; choose one of {sorted(KINDS)}, "
                          "or 'module:QualName' of a user kind.")
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"intervention kind {kind!r} got unknown keys {sorted(unknown)}; valid keys are {sorted(known)}.")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"intervention kind {kind!r}: {e}") from None


__all__ = ["builtin_kinds", "intervention_from_dict"]
