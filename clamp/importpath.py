"""Objects named by import path (``"package.module:Qual.Name"``).

Why this file exists: a task class or a metric function defined outside the
package (in a study file or a user package) is written to ``study.json`` /
``run.json`` as its import path and found again from that string in worker
processes and on resume.  One writer and one reader, so both agree.
"""

from __future__ import annotations

import importlib
from typing import Any

from clamp.errors import ConfigError


def import_path(obj: Any) -> str:
    """``"module:QualName"`` of a class or function, checked to resolve back to ``obj``.

    Example:
        >>> from clamp.errors import ConfigError
        >>> import_path(ConfigError)
        'clamp.errors:ConfigError'
    """
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qual or "<locals>" in qual or "<lambda>" in qual:
        raise ConfigError(
            f"{obj!r} has no import path (a lambda or a function defined inside another function); "
            "define it at module level in the study file or in an importable module.")
    path = f"{module}:{qual}"
    try:
        back = resolve(path)
    except ConfigError:
        back = None
    if back is not obj:
        raise ConfigError(
            f"{obj!r} is not importable as {path!r}: its module is not on sys.path in this process. "
            "Define it in the study file loaded with clamp.load_study, or in a module on PYTHONPATH.")
    return path


def resolve(path: str) -> Any:
    """The object named by ``"module:QualName"`` (imports the module if needed).

    Example:
        >>> resolve("clamp.errors:ConfigError").__name__
        'ConfigError'
    """
    if not isinstance(path, str) or path.count(":") != 1:
        raise ConfigError(f"{path!r} is not an import path; expected 'module:QualName'.")
    module, qual = path.split(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"cannot import module {module!r} for {path!r} ({e}). Fix: put the module on PYTHONPATH, or load the "
            "study file that defines it with clamp.load_study before resuming.") from e
    for part in qual.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {module!r} has no {qual!r} (for {path!r}); was it renamed or removed?")
        obj = getattr(obj, part)
    return obj
