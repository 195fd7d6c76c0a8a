"""Command-line overrides of a study: ``--set arms.control.lr=3e-5`` and picking arms and seeds.

Why this file exists: a study file is the record of an experiment, but trying a
variation should not need an edited copy.  An override names a field by its
dotted path (``arms.<arm or *>.<field>[.<sub-field>]`` or a study field),
its value is parsed by that field's annotation, and the result is validated
like a freshly loaded study, so a bad override fails before any training.
"""

from __future__ import annotations

import difflib
from dataclasses import fields, replace
from typing import Any, Sequence

from clamp.errors import ConfigError
from clamp.fields import ParseError, hints, parse_value
from clamp.study.design import Arm, Study, StudyError
from clamp.study.checks import validate_study


def _set_path(obj: Any, path: list[str], text: str, key: str) -> Any:
    """Return ``obj`` with the (dotted) field ``path`` set from ``text``."""
    name, rest = path[0], path[1:]
    valid = [f.name for f in fields(obj) if f.init and f.name != "origin"]
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise StudyError(f"--set {key}: {type(obj).__name__} has no field {name!r}.{hint} Valid fields: {valid}.")
    current = getattr(obj, name)
    if rest:
        if not hasattr(current, "__dataclass_fields__"):
            raise StudyError(f"--set {key}: {type(obj).__name__}.{name} has no sub-fields.")
        new = _set_path(current, rest, text, key)
    else:
        if name in ("interventions", "arms", "dense", "phase", "comparisons", "factors", "model", "task"):
            raise StudyError(f"--set {key}: {name} cannot be set from the command line; edit it in the study file.")
        try:
            new = parse_value(text, hints(type(obj))[name], key)
        except ParseError as e:
            raise StudyError(str(e)) from e
    try:
        return replace(obj, **{name: new})
    except ConfigError as e:
        raise StudyError(f"--set {key}={text}: {e}") from e


def apply_overrides(study: Study, overrides: Sequence[str]) -> Study:
    """Apply ``--set`` overrides such as ``arms.control.lr=3e-5``, ``arms.*.model.d_model=16``, ``n_sequences=2e4``.

    Values are parsed by the target field's type; unknown fields, unknown arms and
    wrong types raise :class:`StudyError` before anything runs.

    Example:
        >>> from clamp.model.config import ModelConfig
        >>> from clamp.tasks import FewShotConfig
        >>> s = Study(name="s", arms=[Arm(name="control", model=ModelConfig(), task=FewShotConfig())], n_sequences=100,
        ...           eval_every=50)
        >>> s2 = apply_overrides(s, ["arms.control.lr=3e-5", "seeds=0,1"])
        >>> s2.arms[0].lr, s2.seeds
        (3e-05, (0, 1))
    """
    for item in overrides:
        if "=" not in item:
            raise StudyError(f"--set {item!r}: expected FIELD=VALUE, e.g. arms.control.lr=3e-5 or n_sequences=20000.")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] == "arms":
            if len(parts) < 3:
                raise StudyError(f"--set {key}: expected arms.<arm name or *>.<field>, e.g. arms.control.lr=3e-5.")
            target = parts[1]
            names = [a.name for a in study.arms]
            if target != "*" and target not in names:
                raise StudyError(f"--set {key}: the study has no arm {target!r}; its arms are {names} (or use arms.*).")
            arms = tuple(_set_path(a, parts[2:], text, key) if target in ("*", a.name) else a for a in study.arms)
            study = replace(study, arms=arms)
        else:
            study = _set_path(study, parts, text, key)
    validate_study(study, probe=False)  # the static part; `clamp run` probes the result before training
    return study


def select(study: Study, arms: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> list[tuple[Arm, int]]:
    """The (arm, seed) runs to execute: all by default, or the named subset (validated)."""
    names = [a.name for a in study.arms]
    for a in arms or ():
        if a not in names:
            raise StudyError(f"--arms {a}: the study has no such arm; its arms are {names}.")
    for s in seeds or ():
        if s not in study.seeds:
            raise StudyError(f"--seeds {s}: not one of the study's seeds {list(study.seeds)}; add it with --set seeds=... .")
    return [(a, s) for a in study.arms if not arms or a.name in arms for s in study.seeds if not seeds or s in seeds]
