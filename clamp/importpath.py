"""User code by import path: one resolver for every lookup, in this process and in workers.

Why this file exists: a run refers to user code -- an intervention kind or function, a metric
function, a task class, a model factory, an adapter, a donor -- by its import path
``"package.module:Qual.Name"``, written to ``study.json`` and ``run.json`` and found again in
worker processes (local, Ray, Slurm) and on resume.  One writer (:func:`import_path`) and one
reader (:func:`resolve`) make sure both sides agree.

Study files are modules too: a study file is imported under a stable name derived from its
path (relative to its git checkout, so a clone or a moved project gives the same name and
the same run keys; the same file always gets the same name, and two files with the same stem
in one checkout never collide) and stays in ``sys.modules``, so what it defines has an import
path like ``"clamp_study_quickstart_1a2b3c4d:sharpen"``.  This process remembers which file
each such module came from (:func:`registered_study_modules`); a worker receives that map with
its job and imports the files again by path (:func:`import_study_modules`), and
:func:`resolve` imports a known study module on demand.  Nothing here imports torch.

Example:
    >>> from clamp.errors import ConfigError
    >>> import_path(ConfigError), resolve("clamp.errors:ConfigError") is ConfigError
    ('clamp.errors:ConfigError', True)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable

from clamp.errors import ConfigError

PREFIX = "clamp_study_"
_FILES: dict[str, str] = {}  # module name -> resolved path of the study file


def _anchor(p: Path) -> str:
    """What names a study file: its path relative to the root of the git checkout holding it (the same in
    every clone, so moving or cloning the project keeps run keys), else its absolute path."""
    for parent in p.parents:
        if (parent / ".git").exists():
            return p.relative_to(parent).as_posix()
    return str(p)


def study_module_name(path: str | Path) -> str:
    """The stable module name of a study file: ``clamp_study_<stem>_<8 hex>``.

    The hex digits hash the file's path relative to its git checkout (absolute outside one), so
    the same file always gets the same name, in any clone, and two study files with the same
    stem do not collide.

    Example:
        >>> study_module_name("/tmp/x/my-study.py").startswith("clamp_study_my_study_")
        True
    """
    p = Path(path).resolve()
    stem = re.sub(r"[^0-9A-Za-z_]", "_", p.stem)
    return f"{PREFIX}{stem}_{hashlib.sha1(_anchor(p).encode()).hexdigest()[:8]}"


def import_study_module(path: str | Path) -> types.ModuleType:
    """Import (or re-import) the file at ``path`` under its stable name and keep it in ``sys.modules``.

    Exceptions raised while executing the file propagate (the module is then removed again).
    """
    p = Path(path).resolve()
    name = study_module_name(p)
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise
    _FILES[name] = str(p)
    return module


def registered_study_modules() -> dict[str, str]:
    """Every study module this process imported: module name -> file path."""
    return dict(_FILES)


def import_study_modules(modules: dict[str, str]) -> None:
    """Import, by path, each study module of ``modules`` not yet imported here (what a worker does first)."""
    for name, path in modules.items():
        if name not in sys.modules:
            _FILES.setdefault(name, path)
            ensure_study_module(name)


def ensure_study_module(name: str) -> None:
    """If ``name`` is a study module this process knows the file of but has not imported, import it."""
    if name.startswith(PREFIX) and name not in sys.modules and name in _FILES:
        import_study_module(_FILES[name])


# --------------------------------------------------------------------------- import paths


def import_path(obj: Any, *, check: bool = True) -> str:
    """``"module:QualName"`` of a module-level class or function.

    Args:
        obj: the class or function.
        check: also check that the path resolves back to ``obj`` in this process (so a worker will find it).

    Raises:
        ConfigError: a lambda, a function defined inside another, or (with ``check``) an object whose
            module is not importable here; the message says where to define it.

    Example:
        >>> import_path(ConfigError)
        'clamp.errors:ConfigError'
    """
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qual or "<locals>" in qual or "<lambda>" in qual:
        raise ConfigError(
            f"{obj!r} has no import path (a lambda or a function defined inside another function), so a worker "
            "could not find it again; define it at module level in the study file or in an importable module.")
    path = f"{module}:{qual}"
    if check:
        try:
            back = resolve(path)
        except ConfigError:
            back = None
        if back is not obj:
            raise ConfigError(
                f"{obj!r} is not importable as {path!r}: its module is not on sys.path in this process. "
                "Define it in the study file loaded with clamp.load_study, or in a module on PYTHONPATH.")
    return path


def function_path(fn: str | Callable) -> str:
    """A user function given as a callable or an import path, as its import path (what the JSON stores)."""
    return fn if isinstance(fn, str) else import_path(fn, check=False)


def resolve(path: str, what: str = "object") -> Any:
    """The object named by ``"module:QualName"``: the one reader of import paths.

    A study file's module (``clamp_study_...``) that this process knows the file of is imported
    by path first.

    Raises:
        ConfigError: a malformed path, a module that cannot be imported, or a missing name; the
            message names the path, what it was for and the fix.

    Example:
        >>> resolve("clamp.errors:ConfigError").__name__
        'ConfigError'
    """
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ConfigError(f"{what} path {path!r} is not an import path; expected 'package.module:QualName'.")
    module, qual = path.split(":")
    ensure_study_module(module)
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"cannot import module {module!r} for the {what} {path!r} ({e}). Fix: put the module on PYTHONPATH, or "
            "load the study file that defines it with clamp.load_study before resuming.") from e
    for part in qual.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {module!r} has no {qual!r} (the {what} {path!r}); was it renamed or removed?")
        obj = getattr(obj, part)
    return obj


def resolve_function(path: str, what: str = "function") -> Callable[..., Any]:
    """:func:`resolve` for a callable.

    Example:
        >>> resolve_function("math:sqrt")(4.0)
        2.0
    """
    obj = resolve(path, what)
    if not callable(obj):
        raise ConfigError(f"the {what} {path!r} is not callable.")
    return obj


__all__ = ["PREFIX", "ensure_study_module", "function_path", "import_path", "import_study_module",
           "import_study_modules", "registered_study_modules", "resolve", "resolve_function", "study_module_name"]
