"""Loading a study file: import it (never exec), and turn every problem into one clear error.

Why this file exists: a study file is the user's code; a syntax error, a missing or mistyped
``STUDY``, an unknown field, duplicate arm names or an intervention that does not fit the
model must each become one :class:`~clamp.study.design.StudyError` naming the file, the line
where it can, and the fix -- before any training starts, and in about a second (no torch:
only the static checks of :mod:`clamp.study.checks` run here).
"""

from __future__ import annotations

import difflib
import re
import traceback
from dataclasses import fields
from pathlib import Path

from clamp.errors import ConfigError
from clamp.importpath import import_study_module
from clamp.model.config import ModelConfig
from clamp.phase import PhaseRule
from clamp.study.checks import validate_study
from clamp.study.design import Arm, Dense, Study, StudyError
from clamp.training.config import TrainConfig


def _where(path: Path, exc: BaseException) -> str:
    """``path:line`` of the deepest frame of ``exc`` inside the study file, else ``path``."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{path}:{exc.lineno}"
    line = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if Path(fs.filename).resolve() == path.resolve():
            line = fs.lineno
    return f"{path}:{line}" if line else str(path)


def _unknown_kwarg_fix(exc: TypeError) -> str | None:
    """Turn ``X.__init__() got an unexpected keyword argument 'y'`` into a fix naming valid fields."""
    m = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(exc))
    if not m:
        return None
    cls_name, bad = m.groups()
    from clamp import tasks
    candidates = {"Arm": Arm, "Study": Study, "Dense": Dense, "PhaseRule": PhaseRule, "ModelConfig": ModelConfig,
                  "TrainConfig": TrainConfig, **{c.__name__: c for c in tasks.TASK_KINDS.values()}}
    cls = candidates.get(cls_name)
    if cls is None:
        return None
    valid = [f.name for f in fields(cls) if f.init and f.name != "origin"]
    close = difflib.get_close_matches(bad, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{cls_name} has no field {bad!r}; {hint}valid fields are {valid}."


def load_study(path: str | Path, *, probe: bool = False) -> Study:
    """Import a study file and return its validated ``STUDY``.

    Loading runs the static checks only (every config, hook names, heads, windows; see
    :func:`validate_study`) and imports neither torch nor nnsight, so a rejected file and
    ``clamp list`` answer in about a second.  ``clamp run`` and ``--dry-run`` then run the
    probe checks (each intervention applied to a probe batch) before any training; pass
    ``probe=True`` to run them here.

    The file is imported with :mod:`importlib` under a stable module name derived
    from its path (:func:`clamp.importpath.study_module_name`) and stays in
    ``sys.modules``, so what it defines can be referred to by import path; it is
    never ``exec``-ed.  Every problem raises :class:`StudyError`.

    Args:
        path: a ``.py`` file exposing a module-level ``STUDY = Study(...)``.

        probe: also run the probe checks (imports torch).

    Returns:
        The study, with every arm validated (see :func:`validate_study`).

    Example:
        >>> # study = load_study("studies/quickstart.py")
    """
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            near = difflib.get_close_matches(path.name, [p.name for p in path.parent.glob("*.py")], n=1)
            hint = f" Did you mean {path.parent / near[0]}?" if near else ""
        raise StudyError(f"{path}: no such study file. Fix: give the path of a .py file in studies/ (`clamp list` shows them).{hint}")
    if path.suffix != ".py":
        raise StudyError(f"{path}: a study file must be a Python file ending in .py.")
    try:
        # Under a stable name derived from the file, kept in sys.modules: functions and kinds defined in the
        # study file are found again by import path (in worker processes too, see clamp.importpath).
        module = import_study_module(path)
    except SyntaxError as e:
        raise StudyError(f"{_where(path, e)}: syntax error: {e.msg}. Fix the Python syntax on that line.") from e
    except ConfigError as e:
        raise StudyError(f"{_where(path, e)}: {e} Fix that value in the study file.") from e
    except TypeError as e:
        fix = _unknown_kwarg_fix(e)
        msg = fix or f"{e}. Fix: Arm, Study and configs take keyword arguments only (name=..., arms=[...])."
        raise StudyError(f"{_where(path, e)}: {msg}") from e
    except Exception as e:
        raise StudyError(f"{_where(path, e)}: importing the study file raised {type(e).__name__}: {e}. Fix the error on that line.") from e
    if not hasattr(module, "STUDY"):
        raise StudyError(f"{path}: defines no module-level STUDY. Fix: end the file with `STUDY = Study(name=..., arms=[...])`.")
    study = module.STUDY
    if not isinstance(study, Study):
        raise StudyError(
            f"{path}: STUDY is a {type(study).__name__}, not a clamp.Study. "
            "Fix: `import clamp` and set `STUDY = clamp.Study(name=..., arms=[clamp.Arm(...)])`."
        )
    validate_study(study, path=path, probe=probe)
    return study


def list_studies(folder: str | Path = "studies") -> list[tuple[Path, Study | StudyError]]:
    """Every ``*.py`` study file in ``folder`` with its loaded study, or the error loading it."""
    out: list[tuple[Path, Study | StudyError]] = []
    for p in sorted(Path(folder).glob("*.py")):
        if p.name.startswith("_"):
            continue
        try:
            out.append((p, load_study(p)))
        except StudyError as e:
            out.append((p, e))
    return out


__all__ = ["list_studies", "load_study"]
