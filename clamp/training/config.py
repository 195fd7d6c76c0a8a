"""The training config (optimiser and schedule), without torch.

Why this file exists: a study is loaded and checked (``clamp list``, a rejected study file, the static
checks of ``clamp run``) before torch is imported, and every arm builds its :class:`TrainConfig` there;
:mod:`clamp.training.trainer`, which imports torch, re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

from clamp.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimiser and schedule; lengths are in sequences seen.

    Defaults follow Singh et al.: Adam, constant lr 1e-5, batch 32.

    Example:
        >>> TrainConfig(n_sequences=3200, eval_every=320).n_steps
        100
    """

    n_sequences: int = 1_000_000
    batch_size: int = 32
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_sequences: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    eval_every: int = 1_000
    eval_size: int = 512  # sequences per run in the "train" evaluation set (phase-change detection uses it)
    heldout_eval_size: int = 128  # sequences per run in each held-out evaluation set
    heldout_eval_every: int | None = None  # held-out sets at the first evaluation after each multiple; None: every one
    device: str = "cpu"
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        if self.n_sequences < 1 or self.batch_size < 1:
            raise ConfigError("TrainConfig.n_sequences and batch_size must be positive.")
        if not self.lr > 0:
            raise ConfigError(f"TrainConfig.lr={self.lr} must be positive.")
        if self.eval_every < 1 or self.eval_size < 1 or self.heldout_eval_size < 1:
            raise ConfigError("TrainConfig.eval_every, eval_size and heldout_eval_size must be positive (in sequences).")
        if self.heldout_eval_every is not None and self.heldout_eval_every < 1:
            raise ConfigError(f"TrainConfig.heldout_eval_every={self.heldout_eval_every} must be positive (sequences), "
                              "or None to evaluate the held-out sets at every evaluation.")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"TrainConfig.schedule={self.schedule!r} is unknown; choose 'constant' or 'cosine'.")
        if self.warmup_sequences < 0 or self.warmup_sequences > self.n_sequences:
            raise ConfigError("TrainConfig.warmup_sequences must be between 0 and n_sequences.")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"TrainConfig.betas={self.betas} must be two numbers in [0, 1).")

    @property
    def n_steps(self) -> int:
        return math.ceil(self.n_sequences / self.batch_size)

    def lr_at(self, seen: int) -> float:
        """Learning rate for the step that starts after ``seen`` sequences."""
        scale = 1.0
        if self.warmup_sequences and seen < self.warmup_sequences:
            scale = (seen + self.batch_size) / self.warmup_sequences
        elif self.schedule == "cosine":
            span = max(self.n_sequences - self.warmup_sequences, 1)
            frac = min(max(seen - self.warmup_sequences, 0) / span, 1.0)
            scale = 0.5 * (1 + math.cos(math.pi * frac))
        return self.lr * min(scale, 1.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        # Fields added later are left out at their default, so earlier studies keep their run keys.
        if d["heldout_eval_every"] is None:
            del d["heldout_eval_every"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ConfigError(f"TrainConfig got unknown keys {sorted(set(d) - known)}; valid keys are {sorted(known)}.")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)
