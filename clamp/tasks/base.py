"""Re-export of :mod:`clamp.batch` (the batch format and task interface) for task modules."""

from clamp.batch import IGNORE, Batch, Task

__all__ = ["IGNORE", "Batch", "Task"]
