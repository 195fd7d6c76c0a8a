"""The task-config protocol, without torch.

Why this file exists: :class:`clamp.study.design.Arm` types its ``task`` field with it, and a study's
fields are type-checked when it loads, before torch is imported; :mod:`clamp.tasks.base` re-exports it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TaskConfig(Protocol):
    """A task's configuration: frozen, JSON-serialisable, builds the task."""

    def build(self) -> Any: ...

    def to_dict(self) -> dict: ...
