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

    @property
    def last_sequence(self) -> int:
        """Sequences seen when the run ends: ``n_sequences`` rounded up to a whole batch."""
        return self.n_steps * self.batch_size

    def is_eval_point(self, seen: int) -> bool:
        """Whether the step that ends at ``seen`` sequences is followed by an evaluation: at 0, at the
        first batch boundary at or past each multiple of ``eval_every``, and at the end (the one rule
        the trainer follows; :meth:`evaluation_points` lists it).

        Example:
            >>> c = TrainConfig(n_sequences=2000, eval_every=500)
            >>> [s for s in (0, 480, 512, 992, 1024) if c.is_eval_point(s)]
            [0, 512, 1024]
        """
        if seen == 0 or seen >= self.n_sequences:
            return True
        B, K = self.batch_size, self.eval_every
        return (seen // K) > ((seen - B) // K)

    def evaluation_points(self) -> list[int]:
        """Every evaluation of a run, in sequences seen (batch boundaries, so not always multiples of ``eval_every``).

        Example:
            >>> TrainConfig(n_sequences=2000, eval_every=500).evaluation_points()
            [0, 512, 1024, 1504, 2016]
        """
        B, K = self.batch_size, self.eval_every
        points = [0]
        for k in range(1, self.last_sequence // K + 1):
            seen = -(-k * K // B) * B  # the first batch boundary at or past k * eval_every
            if seen < self.n_sequences and seen != points[-1]:
                points.append(seen)
        if points[-1] != self.last_sequence:
            points.append(self.last_sequence)
        return points

    def grid_words(self) -> str:
        """The evaluation grid in words, saying where it snaps to batch boundaries and where the run ends.

        Example:
            >>> TrainConfig(n_sequences=2000, eval_every=500).grid_words()
            'evaluations every 500 sequences, at the first batch boundary (batch 32) at or past each multiple: 0, 512, 1,024, 1,504, … and at the end; a run of 2,000 sequences ends at 2,016 (rounded up to a whole batch)'
            >>> TrainConfig(n_sequences=3200, eval_every=320).grid_words()
            'evaluations every 320 sequences: 0, 320, 640, 960, … and at the end'
        """
        K, B, last = self.eval_every, self.batch_size, self.last_sequence
        pts = [0] + [-(-k * K // B) * B for k in range(1, 4)]  # the grid's start (not capped by the length)
        head = ", ".join(f"{p:,}" for p in pts) + ", … and at the end"
        out = (f"evaluations every {K:,} sequences: {head}" if K % B == 0 else
               f"evaluations every {K:,} sequences, at the first batch boundary (batch {B}) at or past each multiple: {head}")
        if last != self.n_sequences:
            out += f"; a run of {self.n_sequences:,} sequences ends at {last:,} (rounded up to a whole batch)"
        return out

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


def grid_words(configs: "list[tuple[str, TrainConfig]]") -> str:
    """The evaluation grid of named runs' configs in words: one sentence, or one per batch size where they differ,
    with the arms whose runs end on a whole batch past their length listed once.

    Example:
        >>> grid_words([("a", TrainConfig(n_sequences=3200, eval_every=320)), ("b", TrainConfig(n_sequences=6400, eval_every=320))])
        'evaluations every 320 sequences: 0, 320, 640, 960, … and at the end'
        >>> grid_words([("a", TrainConfig(n_sequences=2000, eval_every=500)), ("b", TrainConfig(n_sequences=2000, eval_every=500, batch_size=16))])
        '`a`: evaluations every 500 sequences, at the first batch boundary (batch 32) at or past each multiple: 0, 512, 1,024, 1,504, … and at the end; `b`: evaluations every 500 sequences, at the first batch boundary (batch 16) at or past each multiple: 0, 512, 1,008, 1,504, … and at the end; runs end on a whole batch: `a` at 2,016 (of 2,000)'
    """
    whole = {cfg.grid_words() for _, cfg in configs}
    if len(whole) == 1:
        return whole.pop()
    heads: dict[str, list[str]] = {}
    ends = []
    for name, cfg in configs:
        heads.setdefault(cfg.grid_words().split("; a run of ")[0], []).append(name)
        if cfg.last_sequence != cfg.n_sequences:
            ends.append(f"`{name}` at {cfg.last_sequence:,} (of {cfg.n_sequences:,})")
    if len(heads) == 1:
        text = next(iter(heads))
    else:
        text = "; ".join(f"{', '.join(f'`{a}`' for a in arms)}: {words}" for words, arms in heads.items())
    return text + (f"; runs end on a whole batch: {', '.join(ends)}" if ends else "")
