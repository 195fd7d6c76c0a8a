"""Fingerprints of user code: what a run's code computed is part of what the run is.

Why this file exists: a run refers to the user's code by import path (an intervention function, a
metric, a task class, a model factory, an adapter, a user intervention kind).  If the body of that
code changes, a finished run computed with the old body is no longer the run the study asks for,
and reusing it would give yesterday's numbers for today's code without a word.  So every piece of
user code a run executes contributes a fingerprint to its key (:mod:`clamp.study.keys`):

- the code's source as a token stream, without comments, docstrings, blank lines or spacing, so
  editing a comment or a docstring keeps the fingerprint, and editing a statement changes it;
  f-strings are kept as one token, so Python 3.11 and 3.12+ tokenisers agree;
- recursively, the user functions and classes it reads from its module's globals (the study file or
  a helper module it imports), a user class's methods and user base classes, and the values of
  module-level constants it reads (numbers, strings, containers, dataclass configs, arrays);
- not installed packages, the standard library or clamp itself (their versions are in the run's
  provenance).

"User code" is code in a module whose file lies outside the Python installation's library folders
and outside clamp's package, or in a study file (``clamp_study_*``).  The fingerprint of an object is
computed once per object (:func:`code_fingerprints` caches it; a study file imported again gives new objects).

Example:
    >>> import textwrap
    >>> a = "def f(x):\\n    '''Doc.'''\\n    return x + 1  # add\\n"
    >>> b = "def f(x):\\n\\n    return x+1\\n"
    >>> source_tokens(a) == source_tokens(b), source_tokens(a) == source_tokens(b.replace("1", "2"))
    (True, False)
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import io
import json
import math
import sys
import sysconfig
import textwrap
import tokenize
import types
import weakref
from pathlib import Path
from typing import Any, Iterable

from clamp.errors import ConfigError
from clamp.importpath import PREFIX, resolve

_LIBRARY_DIRS = tuple({str(Path(p).resolve()) for p in (sysconfig.get_paths().get(k) for k in
                                                          ("stdlib", "platstdlib", "purelib", "platlib")) if p})
_CLAMP_DIR = str(Path(__file__).resolve().parent)
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_FSTRING = tuple(getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n))
_CACHE: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()  # object -> fingerprint


def is_user_module(name: str | None) -> bool:
    """Whether module ``name`` is the user's code (a study file, or a file outside the installation and clamp)."""
    if not name:
        return False
    if name.startswith(PREFIX):
        return True
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if module is None or not path:
        return False  # builtins, namespace packages
    path = str(Path(path).resolve())
    return not path.startswith(_CLAMP_DIR) and not any(path.startswith(d) for d in _LIBRARY_DIRS)


def is_user_object(obj: Any) -> bool:
    """Whether ``obj`` is a function or class defined in user code."""
    return isinstance(obj, (types.FunctionType, type)) and is_user_module(getattr(obj, "__module__", None))


def _docstring_spans(tree: ast.AST) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                spans.append(((first.lineno, first.col_offset), (first.end_lineno or first.lineno, first.end_col_offset or 0)))
    return spans


def source_tokens(source: str) -> list[str]:
    """The source's tokens without comments, docstrings, blank lines and spacing (f-strings as one token).

    Example:
        >>> source_tokens("x = f'{a}'  # c\\n")
        ['NAME:x', 'OP:=', "STRING:f'{a}'", 'NEWLINE']
    """
    source = textwrap.dedent(source)
    spans = _docstring_spans(ast.parse(source))
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    fstring_start: tuple[int, int] | None = None
    depth = 0  # f-strings nested inside the one being rebuilt
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _SKIP:
            continue
        if any(a <= tok.start < b for a, b in spans):
            continue
        if _FSTRING and tok.type in _FSTRING:  # Python 3.12+: one f-string is several tokens; rebuild it
            if tok.type == _FSTRING[0]:
                fstring_start = tok.start if fstring_start is None else fstring_start
                depth += 1
            if tok.type == _FSTRING[-1]:
                depth -= 1
                if depth == 0:
                    out.append("STRING:" + _slice(lines, fstring_start, tok.end))
                    fstring_start = None
            continue
        if fstring_start is not None:
            continue  # the expressions inside an f-string: part of its text
        if tok.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE):
            out.append(tokenize.tok_name[tok.type])
        else:
            out.append(f"{tokenize.tok_name[tok.type]}:{tok.string}")
    # a removed docstring leaves its NEWLINE: drop NEWLINEs that end nothing
    cleaned: list[str] = []
    for t in out:
        if t == "NEWLINE" and (not cleaned or cleaned[-1] in ("NEWLINE", "INDENT", "DEDENT")):
            continue
        cleaned.append(t)
    return cleaned


def _slice(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    (r0, c0), (r1, c1) = start, end
    if r0 == r1:
        return lines[r0 - 1][c0:c1]
    return lines[r0 - 1][c0:] + "".join(lines[r0:r1 - 1]) + lines[r1 - 1][:c1]


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _functions_of(obj: Any) -> list[types.FunctionType]:
    """The functions whose globals ``obj`` reads: itself, or a class's methods (properties, static/class methods)."""
    if isinstance(obj, types.FunctionType):
        return [obj]
    out = []
    for value in vars(obj).values():
        for f in (value, getattr(value, "__func__", None), getattr(value, "fget", None), getattr(value, "fset", None)):
            if isinstance(f, types.FunctionType):
                out.append(f)
    return out


def _value(v: Any, depth: int = 0) -> Any:
    """A canonical, JSON-able description of a module-level value a function reads."""
    if depth > 6:
        return type(v).__qualname__
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return repr(v) if not math.isfinite(v) else v
    if isinstance(v, bytes):
        return "bytes:" + hashlib.sha256(v).hexdigest()
    if isinstance(v, (list, tuple)):
        return [type(v).__name__, [_value(x, depth + 1) for x in v]]
    if isinstance(v, (set, frozenset)):
        return ["set", sorted(json.dumps(_value(x, depth + 1), sort_keys=True, default=str) for x in v)]
    if isinstance(v, dict):
        return ["dict", sorted((str(k), json.dumps(_value(x, depth + 1), sort_keys=True, default=str)) for k, x in v.items())]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return [type(v).__qualname__, {f.name: _value(getattr(v, f.name), depth + 1) for f in dataclasses.fields(v)}]
    if hasattr(v, "tobytes") and hasattr(v, "shape"):  # numpy arrays
        return ["array", str(getattr(v, "dtype", "")), list(v.shape), hashlib.sha256(v.tobytes()).hexdigest()]
    if type(v).__module__.startswith("torch") and hasattr(v, "detach"):  # tensors
        arr = v.detach().cpu().contiguous()
        return ["tensor", str(arr.dtype), list(arr.shape), hashlib.sha256(arr.numpy().tobytes()).hexdigest()]
    text = repr(v)
    return type(v).__qualname__ + ("" if " at 0x" in text else ":" + text)


def _describe(obj: Any, seen: dict[int, str], parts: list[Any]) -> None:
    """Append to ``parts`` everything ``obj``'s behaviour depends on in user code (recursively, once per object)."""
    if id(obj) in seen:
        parts.append(["ref", seen[id(obj)]])
        return
    name = f"{obj.__module__}:{obj.__qualname__}"
    seen[id(obj)] = name
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError) as e:
        raise ConfigError(f"the source of {name} cannot be read ({e}), so runs using it cannot be keyed by their "
                          "code; define it in the study file or in a module on PYTHONPATH.") from None
    parts.append(["code", name, source_tokens(source)])
    if isinstance(obj, type):
        for base in obj.__mro__[1:]:
            if is_user_object(base):
                _describe(base, seen, parts)
    for fn in _functions_of(obj):
        module_globals = fn.__globals__
        names = sorted(_code_names(fn.__code__))
        if fn.__closure__:
            for cell_name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
                try:
                    _dependency(cell_name, cell.cell_contents, module_globals, names, seen, parts)
                except ValueError:
                    continue  # an empty cell
        for n in names:
            if n in module_globals:
                _dependency(n, module_globals[n], module_globals, names, seen, parts)


def _dependency(n: str, v: Any, module_globals: dict, names: list[str], seen: dict[int, str], parts: list[Any]) -> None:
    if is_user_object(v):
        _describe(v, seen, parts)
    elif isinstance(v, types.ModuleType):
        if is_user_module(v.__name__):  # a helper module: the attributes read from it
            for attr in names:
                member = getattr(v, attr, None)
                if is_user_object(member):
                    _describe(member, seen, parts)
                elif member is not None and not callable(member) and not isinstance(member, types.ModuleType) \
                        and attr in vars(v):
                    parts.append(["value", f"{v.__name__}.{attr}", _value(member)])
    elif isinstance(v, (types.FunctionType, types.BuiltinFunctionType, type)):
        parts.append(["uses", n, f"{getattr(v, '__module__', '')}:{getattr(v, '__qualname__', '')}"])
    elif not callable(v):
        parts.append(["value", n, _value(v)])


def fingerprint(obj: Any) -> str:
    """The fingerprint of a user function or class: 16 hex digits over its tokens and what it reads.

    Example:
        >>> fingerprint(len)  # not user code
        Traceback (most recent call last):
        ...
        clamp.errors.ConfigError: len is not a function or class of user code; only those are fingerprinted.
    """
    if not is_user_object(obj):
        raise ConfigError(f"{getattr(obj, '__qualname__', obj)} is not a function or class of user code; only those "
                          "are fingerprinted.")
    parts: list[Any] = []
    _describe(obj, {}, parts)
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_user_path(path: str) -> bool:
    """Whether the import path ``"module:Qual"`` names user code (resolving it)."""
    if not isinstance(path, str) or ":" not in path:
        return False
    return is_user_object(resolve(path, "user code"))


def code_fingerprints(paths: Iterable[str], *, fresh: bool = False) -> dict[str, str]:
    """``{import path: fingerprint}`` of the user code among ``paths`` (others are left out), cached per process.

    ``fresh=True`` recomputes (a worker checking that the code it imported is the code the run was keyed with).
    """
    out = {}
    for path in sorted(set(paths)):
        obj = resolve(path, "user code")
        if not is_user_object(obj):
            continue
        if fresh or obj not in _CACHE:  # per object: a study file imported again gives new objects
            _CACHE[obj] = fingerprint(obj)
        out[path] = _CACHE[obj]
    return out


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (the study file, recorded for the reader; not part of any key)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def changed_code(recorded: dict | None, current: dict) -> str:
    """A phrase naming how a stored run's code fingerprints differ from the current ones ("" when they agree).

    Example:
        >>> changed_code(None, {"m:f": "ab"}), changed_code({"m:f": "ab"}, {"m:f": "cd"})
        ('code unknown: written before clamp recorded the code of m:f', 'the code of m:f changed')
    """
    recorded = recorded if isinstance(recorded, dict) else None
    if recorded is None:
        return f"code unknown: written before clamp recorded the code of {', '.join(sorted(current))}" if current else ""
    changed = sorted(p for p in set(recorded) | set(current) if recorded.get(p) != current.get(p))
    if not changed:
        return ""
    return f"the code of {', '.join(changed)} changed"


__all__ = ["changed_code", "code_fingerprints", "file_digest", "fingerprint", "is_user_module", "is_user_object",
           "is_user_path", "source_tokens"]
