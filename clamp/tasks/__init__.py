"""Tasks: one module per task, each a frozen config with ``build()`` (the protocol is in :mod:`clamp.tasks.base`)."""

from __future__ import annotations

from clamp.errors import ConfigError
from clamp.tasks.bursty_config import BurstyConfig
from clamp.tasks.fewshot_config import FewShotConfig
from clamp.tasks.markov_config import MarkovConfig
from clamp.tasks.repeat_config import RepeatConfig
from clamp.tasks.text_config import TextConfig
from clamp.tasks.protocol import TaskConfig

# The configs above are torch-free (a study is loaded and checked without torch); the tasks and the
# protocol in clamp.tasks.base import torch, so they are imported on first use.
_LAZY = {"IGNORE": "base", "Batch": "base", "EvalView": "base", "Task": "base", "TaskBase": "base",
         "UserTaskConfig": "base", "standard_metrics": "base",
         "BurstyTask": "bursty", "FewShotTask": "fewshot", "MarkovTask": "markov", "RepeatTask": "repeat",
         "TextTask": "text"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"clamp.tasks.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clamp.tasks' has no attribute {name!r}")

#: built-in task configs by their ``kind``; a config from elsewhere has an import path as its kind.
TASK_KINDS: dict[str, type] = {"fewshot": FewShotConfig, "repeat": RepeatConfig, "text": TextConfig, "markov": MarkovConfig, "bursty": BurstyConfig}


def task_from_dict(d: dict) -> TaskConfig:
    """Rebuild a task config from its ``to_dict()`` output; rejects unknown kinds and keys.

    ``kind`` is a built-in name (``"fewshot"``, ``"repeat"``, ...) or the import path
    ``"module:QualName"`` of a user config class (see :class:`clamp.tasks.base.UserTaskConfig`).

    Example:
        >>> task_from_dict({"kind": "repeat", "vocab": 8, "half": 3}).half
        3
    """
    d = dict(d)
    kind = d.get("kind")
    if isinstance(kind, str) and ":" in kind:
        from clamp.importpath import resolve

        cls = resolve(kind)
        if not isinstance(cls, type) or not hasattr(cls, "build"):
            raise ConfigError(f"task kind {kind!r} is not a task config class (it needs build() and to_dict()).")
        if hasattr(cls, "from_dict"):
            return cls.from_dict(d)
        return cls(**{k: v for k, v in d.items() if k != "kind"})
    if kind not in TASK_KINDS:
        raise ConfigError(f"unknown task kind {kind!r}; choose one of {sorted(TASK_KINDS)} "
                          "or give a user task's import path 'module:QualName'.")
    cls = TASK_KINDS[kind]
    known = set(cls.__dataclass_fields__)
    if set(d) - known:
        raise ConfigError(f"{cls.__name__} got unknown keys {sorted(set(d) - known)}; valid keys are {sorted(known)}.")
    return cls(**d)


__all__ = ["IGNORE", "Batch", "EvalView", "Task", "TaskBase", "TaskConfig", "UserTaskConfig", "standard_metrics",
           "FewShotConfig", "FewShotTask", "RepeatConfig", "RepeatTask",
           "TextConfig", "TextTask", "MarkovConfig", "MarkovTask", "BurstyConfig", "BurstyTask", "TASK_KINDS", "task_from_dict"]
