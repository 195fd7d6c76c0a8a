"""Type-directed checking and parsing of dataclass fields.

Why this file exists: study records (:mod:`clamp.study.design`) are checked against
their annotations when built, and ``--set FIELD=VALUE`` overrides
(:mod:`clamp.study.overrides`) parse text by the target field's annotation; both use
the same small reading of ``int``, ``float``, ``bool``, ``str``, ``Literal``,
``X | None`` and ``tuple[...]`` annotations, kept here.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import fields
from typing import Any, Literal, Sequence

from clamp.errors import ConfigError


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=vars(sys.modules[cls.__module__]))


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {type_name(args[0])}"
        return f"{len(args)} values ({', '.join(type_name(a) for a in args)})"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, tp)


def check_fields(obj: Any, skip: Sequence[str] = ()) -> None:
    """Raise ConfigError naming the field if a value does not match its annotation."""
    annotations = hints(type(obj))
    for f in fields(obj):
        if f.name in skip:
            continue
        v = getattr(obj, f.name)
        if not matches(v, annotations[f.name]):
            raise ConfigError(
                f"{type(obj).__name__}.{f.name} expects {type_name(annotations[f.name])}, got {v!r} ({type(v).__name__})."
            )



class ParseError(ConfigError):
    """A command-line value does not fit its field's type."""


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse a command-line value ``text`` as type ``tp``; raise ParseError naming ``key``."""
    origin = typing.get_origin(tp)
    bad = ParseError(f"--set {key}={text}: {key.rsplit('.', 1)[-1]} expects {type_name(tp)}, got {text!r}.")
    t = text.strip()
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and t.lower() in ("none", "null"):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(t, a, key)
            except ParseError:
                continue
        raise bad
    if origin is Literal:
        for choice in typing.get_args(tp):
            if str(choice) == t:
                return choice
        raise bad
    if origin is tuple:
        args = typing.get_args(tp)
        try:
            items = json.loads(t) if t.startswith("[") else [x for x in t.split(",") if x.strip()]
        except json.JSONDecodeError:
            raise bad from None
        if not isinstance(items, list):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(str(x), args[0], key) for x in items)
        if len(items) != len(args):
            raise bad
        return tuple(parse_value(str(x), a, key) for x, a in zip(items, args))
    if tp is bool:
        if t.lower() in ("true", "1", "yes", "on"):
            return True
        if t.lower() in ("false", "0", "no", "off"):
            return False
        raise bad
    if tp is int:
        try:
            return int(t.replace("_", ""))
        except ValueError:
            try:
                f = float(t)
            except ValueError:
                raise bad from None
            if f.is_integer():
                return int(f)
            raise bad from None
    if tp is float:
        try:
            return float(t)
        except ValueError:
            raise bad from None
    if tp is str:
        return text
    raise ParseError(f"--set {key}=...: {key.rsplit('.', 1)[-1]} cannot be set from the command line; edit it in the study file.")
