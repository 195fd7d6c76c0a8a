"""Synthetic tasks: one module per task, each a frozen config with ``build()``."""

from __future__ import annotations

from clamp.errors import ConfigError
from clamp.tasks.base import IGNORE, Batch, Task
from clamp.tasks.fewshot import FewShotConfig, FewShotTask
from clamp.tasks.repeat import RepeatConfig, RepeatTask

TaskConfig = FewShotConfig | RepeatConfig
TASK_KINDS: dict[str, type] = {"fewshot": FewShotConfig, "repeat": RepeatConfig}


def task_from_dict(d: dict) -> TaskConfig:
    """Rebuild a task config from :meth:`to_dict` output; rejects unknown kinds and keys."""
    d = dict(d)
    kind = d.get("kind")
    if kind not in TASK_KINDS:
        raise ConfigError(f"unknown task kind {kind!r}; choose one of {sorted(TASK_KINDS)}.")
    cls = TASK_KINDS[kind]
    known = set(cls.__dataclass_fields__)
    if set(d) - known:
        raise ConfigError(f"{cls.__name__} got unknown keys {sorted(set(d) - known)}; valid keys are {sorted(known)}.")
    return cls(**d)


__all__ = ["IGNORE", "Batch", "Task", "FewShotConfig", "FewShotTask", "RepeatConfig", "RepeatTask",
           "TaskConfig", "TASK_KINDS", "task_from_dict"]
