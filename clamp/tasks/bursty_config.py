"""The bursty task's config, without torch: studies are loaded and checked before torch is imported.

Why this file exists: ``clamp list``, a rejected study file and the static checks of ``clamp run`` build
every arm's config and ask its ``dims()``; the task itself (:mod:`clamp.tasks.bursty`, which imports torch) is
built only by ``build()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from clamp.errors import ConfigError
from clamp.importpath import resolve
from clamp.phase import PhaseRule


@dataclass(frozen=True, kw_only=True)
class BurstyConfig:
    """Parameters of the bursty classification task (Reddy 2023's notation in brackets).

    Example:
        >>> BurstyConfig(n_classes=64, d_in=16).build().dims()
        {'d_in': 16, 'd_vocab': 32, 'd_out': 32, 'n_ctx': 17}
    """

    kind: Literal["bursty"] = "bursty"
    n_classes: int = 512  # [K]
    n_labels: int = 32  # [L]
    n_pairs: int = 8  # [N]
    burst: int = 4  # [B] copies of each class in a bursty context
    burstiness: float = 0.9  # [p_B]
    zipf: float = 0.0  # [alpha]
    noise: float = 0.1  # [epsilon]
    d_in: int = 64  # [D]
    n_novel_classes: int = 128
    vectors_seed: int = 0

    def __post_init__(self) -> None:
        if self.n_labels < 2 or self.n_classes < self.n_labels:
            raise ConfigError(f"BurstyConfig: need n_labels >= 2 and n_classes >= n_labels (got {self.n_classes}, {self.n_labels}).")
        if self.n_pairs < 1 or self.burst < 1 or self.n_pairs % self.burst:
            raise ConfigError(f"BurstyConfig.n_pairs={self.n_pairs} must be a positive multiple of burst={self.burst}.")
        if self.n_pairs // self.burst > self.n_labels:
            raise ConfigError("BurstyConfig: a bursty context's classes (n_pairs / burst) must not outnumber the labels.")
        if not 0.0 <= self.burstiness <= 1.0:
            raise ConfigError(f"BurstyConfig.burstiness={self.burstiness} must be in [0, 1].")
        if self.zipf < 0 or self.noise < 0 or self.d_in < 1:
            raise ConfigError("BurstyConfig: zipf and noise must be >= 0 and d_in positive.")
        if self.n_novel_classes < self.n_pairs // self.burst:
            raise ConfigError(f"BurstyConfig.n_novel_classes={self.n_novel_classes} is fewer than n_pairs / burst.")

    def build(self) -> Any:
        """The sampler, :class:`clamp.tasks.bursty.BurstyTask` (imports torch)."""
        # Looked up by import path, not imported: the task module imports this config module.
        return resolve("clamp.tasks.bursty:BurstyTask", "task")(self)

    def dims(self) -> dict[str, int]:
        """The sizes the model takes from this task (the same as the built task's ``dims()``, without torch)."""
        return {"d_in": self.d_in, "d_vocab": self.n_labels, "d_out": self.n_labels, "n_ctx": 2 * self.n_pairs + 1}

    def to_dict(self) -> dict:
        return asdict(self)

    def default_phase_rule(self):
        """In-context learning emerges: accuracy on novel classes above halfway from chance to 1."""
        chance = self.burst / self.n_pairs  # picking one of the context's labels at random
        return PhaseRule(metric="in_context/acc", threshold=(1 + chance) / 2, direction="above")
