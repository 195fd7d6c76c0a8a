"""Re-export of :mod:`clamp.tasks.batch` (the batch format and task interface) for task modules."""

from clamp.tasks.batch import IGNORE, Batch, Task

__all__ = ["IGNORE", "Batch", "Task"]
