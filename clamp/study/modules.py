"""Study files as importable modules under a stable name, in this process and in workers.

Why this file exists: a study file may define functions and classes that the
results refer to by import path (a user intervention kind, an nnsight
intervention, a ``FunctionClamp`` function): ``"clamp_study_<stem>_<hash>:sharpen"``.
For that path to resolve later -- in a spawned worker process, on resume, when
rebuilding interventions from ``study.json`` -- the file is imported under a name
derived from its path (relative to its git checkout, so a clone or a moved
project gives the same name and the same run keys; the same file always gets the
same name, two files with the same stem in one checkout never collide) and
stays in ``sys.modules``.  This
process remembers which file each such module came from
(:func:`registered_study_modules`); a worker receives that map with its job and
imports the files again by path (:func:`import_study_modules`) before rebuilding
anything.  Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import types
from pathlib import Path

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


__all__ = ["study_module_name", "import_study_module", "registered_study_modules", "import_study_modules",
           "ensure_study_module"]
