"""The markov task's config, without torch: studies are loaded and checked before torch is imported.

Why this file exists: ``clamp list``, a rejected study file and the static checks of ``clamp run`` build
every arm's config and ask its ``dims()``; the task itself (:mod:`clamp.tasks.markov`, which imports torch) is
built only by ``build()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from clamp.errors import ConfigError
from clamp.importpath import resolve
from clamp.phase import PhaseRule


@dataclass(frozen=True, kw_only=True)
class MarkovConfig:
    """Parameters of the Markov-chain task.

    Example:
        >>> MarkovConfig(n_states=3, n_ctx=32).build().dims()
        {'d_in': 0, 'd_vocab': 3, 'd_out': 3, 'n_ctx': 32}
    """

    kind: Literal["markov"] = "markov"
    n_states: int = 3
    n_ctx: int = 64
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.n_states < 2:
            raise ConfigError(f"MarkovConfig.n_states={self.n_states}: need at least 2 states.")
        if self.n_ctx < 4:
            raise ConfigError(f"MarkovConfig.n_ctx={self.n_ctx}: need at least 4 positions.")
        if not self.alpha > 0:
            raise ConfigError(f"MarkovConfig.alpha={self.alpha} must be positive (the Dirichlet concentration).")

    def build(self) -> Any:
        """The sampler, :class:`clamp.tasks.markov.MarkovTask` (imports torch)."""
        # Looked up by import path, not imported: the task module imports this config module.
        return resolve("clamp.tasks.markov:MarkovTask", "task")(self)

    def dims(self) -> dict[str, int]:
        """The sizes the model takes from this task (the same as the built task's ``dims()``, without torch)."""
        return {"d_in": 0, "d_vocab": self.n_states, "d_out": self.n_states, "n_ctx": self.n_ctx}

    def to_dict(self) -> dict:
        return asdict(self)

    def default_phase_rule(self):
        """Halfway from the unigram to the bigram reference loss (``markov/bigram_progress`` above 0.5)."""
        return PhaseRule(metric="markov/bigram_progress", threshold=0.5, direction="above")
