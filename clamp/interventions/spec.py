"""Interventions as data: the base class every kind derives from, windows, and the registry of kinds.

Why this file exists: an arm of a study is described by a list of interventions
that must be written to and read back from JSON exactly (the results record
how to rerun, and a run's key hashes ``to_dict()``), compared, and validated
before anything trains.  Each kind is ONE class (a frozen, keyword-only
dataclass deriving from :class:`Intervention`) that carries its fields, its own
validation (:meth:`Intervention.check`) and its own effect
(:meth:`Intervention.compile`); the built-in kinds live in
:mod:`clamp.interventions.kinds`, one concept per module.  Defining the class
registers it:

- a built-in kind (defined under ``clamp.interventions``) sets ``kind = "..."``
  and is serialised by that string (the JSON of existing results is unchanged);
- a user kind (in a study file or any importable module) leaves ``kind`` unset
  and is serialised by its import path ``"module:QualName"``, so worker
  processes and resumed runs import it again (study files are importable under a
  stable module name, see :mod:`clamp.importpath`).

This module imports neither torch nor nnsight (kinds import torch only inside
``check``/``compile``), so declaring a study stays cheap.

Schedules are in sequences seen (per run).  An intervention is active at a
training step or evaluation when ``start <= seen < stop`` for one of its
windows (``stop=None``: to the end of training).  A training step is labelled
by the sequences seen *before* it; an evaluation by the sequences seen when it
runs.

Example:
    >>> from clamp.interventions import Knockout
    >>> from clamp.interventions.registry import intervention_from_dict
    >>> iv = Knockout(site="blocks.1.attn.hook_v", keep=(0,))
    >>> intervention_from_dict(iv.to_dict()) == iv
    True
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Sequence

from clamp.errors import ConfigError
from clamp.importpath import import_path
from clamp.interventions.when import When, is_triggered

# The torch-side types a kind works with -- clamp.interventions.probe.Probe and clamp.interventions.effects.Compiled --
# are annotated by name only (Any): this module is torch-free, and the probe is built on top of it.
_Probe = Any
_Compiled = Any

KINDS: dict[str, type["Intervention"]] = {}  # built-in kind string -> class
_BUILTIN_PREFIX = "clamp.interventions."


@dataclass(frozen=True, kw_only=True)
class Window:
    """Active while ``start <= seen < stop`` (``stop=None``: until training ends), in sequences seen.

    Example:
        >>> Window(start=64, stop=128).contains(100)
        True
    """

    start: "int | When" = 0
    stop: "int | When | None" = None

    def __post_init__(self) -> None:  # a start/stop may be an event (clamp.When): see clamp.interventions.when
        object.__setattr__(self, "start", When.coerce(self.start))
        object.__setattr__(self, "stop", When.coerce(self.stop))
        if isinstance(self.stop, When) and self.stop.duration is not None:
            raise ConfigError("Window(stop=When(..., duration=...)): duration belongs to a start event; drop it.")

    def contains(self, seen: int) -> bool:
        if is_triggered(self):
            raise ConfigError("a triggered window (start/stop=When(...)) is open per run; apply it through "
                              "clamp.interventions.triggers.TriggeredApplier (make_intervener does).")
        return self.start <= seen and (self.stop is None or seen < self.stop)

    def to_dict(self) -> dict:
        return {"start": _end_dict(self.start), "stop": _end_dict(self.stop)}

    @classmethod
    def coerce(cls, w: "Window | dict | Sequence[int | None]") -> "Window":
        """A Window from a Window, a ``{"start", "stop"}`` dict or a ``(start, stop)`` pair."""
        if isinstance(w, Window):
            return w
        if isinstance(w, dict):
            unknown = set(w) - {"start", "stop"}
            if unknown:
                raise ConfigError(f"Window got unknown keys {sorted(unknown)}; valid keys are ['start', 'stop'].")
            return cls(**w)
        if isinstance(w, (list, tuple)) and len(w) == 2:
            return cls(start=w[0], stop=w[1])
        raise ConfigError(f"cannot read a window from {w!r}; give Window(start=..., stop=...), a dict or a (start, stop) pair.")


def _end_dict(v: "int | When | None") -> "int | dict | None":
    return v.to_dict() if isinstance(v, When) else v


# --------------------------------------------------------------------------- helpers for fields


def tuple_or_none(v: Any) -> tuple | None:
    if v is None:
        return None
    if isinstance(v, int):
        return (v,)
    return tuple(v)


def nested_tuple(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(nested_tuple(x) for x in v)
    if hasattr(v, "tolist"):  # a tensor or array
        return nested_tuple(v.tolist())
    return v


def jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, Window):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def heads_tag(heads: tuple[int, ...] | None, keep: tuple[int, ...] | None = None) -> str:
    if keep is not None:
        return "keep" + "-".join(map(str, keep))
    if heads is None:
        return "all"
    return "h" + "-".join(map(str, heads))


def site_tag(site: str) -> str:
    return site.replace("blocks.", "L").replace(".attn.", ".").replace("hook_", "").replace(".", "_")


# --------------------------------------------------------------------------- the base class


@dataclass(frozen=True, kw_only=True)
class Intervention:
    """Base of every kind: a name, windows, and the three things a kind provides.

    A kind (built-in or user) overrides:

    - :meth:`check` -- problems against the model/task (hook names, heads, layers,
      value shapes), read from a :class:`~clamp.interventions.probe.Probe`;
    - :meth:`compile` -- its effect on one model: a
      :class:`~clamp.interventions.effects.Compiled` (ops at hook points);
    - optionally :meth:`noop_reason` -- why a configuration changes nothing
      (validation rejects an intervention that leaves its site unchanged on a
      probe batch; this says why in words).

    Attributes:
        name: unique within an arm; used in metric names (``fired/<name>``).
            Left empty, it is derived from the kind and site.
        windows: when it is active, in sequences seen; default: always.
    """

    kind: ClassVar[str] = ""
    #: whether a window of this kind may open and close per run (``clamp.When``); a kind whose edit cannot be
    #: restricted to some runs of a pack (a user's nnsight code) says False, and validation refuses it.
    triggerable: ClassVar[bool] = True
    name: str = ""
    windows: tuple[Window, ...] = (Window(),)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind:
            if not cls.__module__.startswith(_BUILTIN_PREFIX):
                raise TypeError(f"{cls.__qualname__}: only built-in kinds set `kind`; a user kind is serialised by "
                                "its import path ('module:QualName'), so leave `kind` unset.")
            if kind in KINDS and KINDS[kind].__qualname__ != cls.__qualname__:
                raise TypeError(f"intervention kind {kind!r} is registered twice")
            KINDS[kind] = cls

    @classmethod
    def kind_key(cls) -> str:
        """What ``to_dict()["kind"]`` holds: the built-in kind string, or ``"module:QualName"``."""
        return cls.__dict__.get("kind") or import_path(cls, check=False)

    def __post_init__(self) -> None:
        windows = self.windows
        if isinstance(windows, (Window, dict)):
            windows = (windows,)
        object.__setattr__(self, "windows", tuple(Window.coerce(w) for w in windows))
        self._normalise()
        if not self.name:
            object.__setattr__(self, "name", self.default_name())

    def _normalise(self) -> None:
        """Turn lists into tuples (and callables into import paths) so equality and JSON round trips hold."""

    def default_name(self) -> str:
        return self.kind or type(self).__name__.lower()

    def active(self, seen: int) -> bool:
        """Whether any window contains ``seen`` (sequences seen)."""
        return any(w.contains(seen) for w in self.windows)

    def to_dict(self) -> dict:
        """JSON-ready dict with a ``kind`` key; :func:`intervention_from_dict` reads it back."""
        d: dict[str, Any] = {"kind": self.kind_key()}
        for f in fields(self):
            d[f.name] = jsonable(getattr(self, f.name))
        return d

    # ----------------------------------------------------------------- what a kind provides

    def check(self, probe: _Probe) -> list[str]:
        """Problems with this intervention on ``probe``'s model and task, each naming the fix; [] if none."""
        return []

    def compile(self, model: Any, task: Any) -> _Compiled:
        """Its effect on ``model`` (a :class:`~clamp.model.transformer.Transformer`): ops at hook points."""
        raise ConfigError(f"intervention kind {self.kind_key()!r} defines no compile(); "
                          "give the class a compile(self, model, task) method returning a Compiled.")

    def code_paths(self) -> list[str]:
        """Import paths of the user code this intervention executes: a user kind's class, and any user function
        it names (a field holding ``"module:function"``).  Run keys fingerprint that code (:mod:`clamp.fingerprint`)."""
        out = [] if type(self).__dict__.get("kind") or ":" not in self.kind_key() else [self.kind_key()]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("fn", "function") and isinstance(value, str) and ":" in value:
                out.append(value)
        return out

    def for_probe(self) -> "Intervention":
        """The intervention applied to the one-run probe model (a kind pairing runs with a checkpoint's runs
        picks one there)."""
        return self

    def noop_reason(self, probe: _Probe) -> str:
        """Why it changed nothing on ``probe`` (used in the validation message)."""
        return "its edit reproduces the values already there"


__all__ = ["KINDS", "Window", "Intervention"]
