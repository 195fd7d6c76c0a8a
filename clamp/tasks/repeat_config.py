"""The repeat task's config, without torch: studies are loaded and checked before torch is imported.

Why this file exists: ``clamp list``, a rejected study file and the static checks of ``clamp run`` build
every arm's config and ask its ``dims()``; the task itself (:mod:`clamp.tasks.repeat`, which imports torch) is
built only by ``build()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from clamp.errors import ConfigError
from clamp.importpath import resolve
from clamp.phase import PhaseRule


@dataclass(frozen=True, kw_only=True)
class RepeatConfig:
    """Parameters of the repeated-token task.

    Args:
        vocab: number of tokens.
        half: segment length (the maximum one when ``min_half`` is set).
        min_half: if set, each sequence's segment length is uniform in ``[min_half, half]``.
        max_prefix: each sequence starts with a uniform ``[0, max_prefix]`` fresh random tokens.

    Example:
        >>> RepeatConfig(vocab=16, half=4).build().dims()["n_ctx"]
        8
        >>> RepeatConfig(vocab=16, half=6, min_half=3, max_prefix=4).build().dims()["n_ctx"]
        16
    """

    kind: Literal["repeat"] = "repeat"
    vocab: int = 64
    half: int = 10
    min_half: int | None = None
    max_prefix: int = 0

    def __post_init__(self) -> None:
        if self.vocab < 2:
            raise ConfigError(f"RepeatConfig.vocab={self.vocab}: need at least 2 tokens.")
        if self.half < 2:
            raise ConfigError(f"RepeatConfig.half={self.half}: need at least 2 tokens per repeat.")
        if self.min_half is not None and not 2 <= self.min_half <= self.half:
            raise ConfigError(f"RepeatConfig.min_half={self.min_half} must be between 2 and half={self.half}, or None.")
        if self.max_prefix < 0:
            raise ConfigError(f"RepeatConfig.max_prefix={self.max_prefix} must be >= 0.")

    @property
    def legacy(self) -> bool:
        """True for the fixed layout (the repeat always at position ``half``)."""
        return self.max_prefix == 0 and self.min_half in (None, self.half)

    def build(self) -> Any:
        """The sampler, :class:`clamp.tasks.repeat.RepeatTask` (imports torch)."""
        # Looked up by import path, not imported: the task module imports this config module.
        return resolve("clamp.tasks.repeat:RepeatTask", "task")(self)

    def dims(self) -> dict[str, int]:
        """The sizes the model takes from this task (the same as the built task's ``dims()``, without torch)."""
        return {"d_in": 0, "d_vocab": self.vocab, "d_out": self.vocab, "n_ctx": self.max_prefix + 2 * self.half}

    def default_phase_rule(self) -> PhaseRule:  # the rule that fits this task's metrics
        """``loss/second_repeat`` below half of chance (``0.5 ln vocab``): the repeat is predicted in context.

        (The total loss cannot fall near 0.4 ln 2: the first repeat is random tokens.)
        """
        import math

        return PhaseRule(metric="loss/second_repeat", threshold=0.5 * math.log(self.vocab), direction="below")

    def to_dict(self) -> dict:
        d = asdict(self)
        # Options added later are left out at their default, so earlier run keys do not change.
        if d["min_half"] is None:
            del d["min_half"]
        if d["max_prefix"] == 0:
            del d["max_prefix"]
        return d
