"""Repeated random token sequences (Olsson et al. 2022).

Why this file exists: the classic induction probe.  A sequence is ``L`` random
tokens followed by the same ``L`` tokens again; next-token loss on the second
repeat collapses once induction heads form, while the first stays at chance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from clamp.errors import ConfigError
from clamp.training.metrics import prefix_matching_score
from clamp.tasks.base import IGNORE, Batch


@dataclass(frozen=True, kw_only=True)
class RepeatConfig:
    """Parameters of the repeated-token task.

    Example:
        >>> RepeatConfig(vocab=16, half=4).build().dims()["n_ctx"]
        8
    """

    kind: Literal["repeat"] = "repeat"
    vocab: int = 64
    half: int = 10

    def __post_init__(self) -> None:
        if self.vocab < 2:
            raise ConfigError(f"RepeatConfig.vocab={self.vocab}: need at least 2 tokens.")
        if self.half < 2:
            raise ConfigError(f"RepeatConfig.half={self.half}: need at least 2 tokens per repeat.")

    def build(self) -> "RepeatTask":
        return RepeatTask(self)

    def default_phase_rule(self) -> "PhaseRule":  # noqa: F821 - the rule that fits this task's metrics
        from clamp.analysis.stats.rule import PhaseRule, THRESHOLD  # noqa: F401

        return PhaseRule(metric="loss/second_repeat", threshold=THRESHOLD)

    def to_dict(self) -> dict:
        return asdict(self)


class RepeatTask:
    evaluators = ("train",)

    def __init__(self, cfg: RepeatConfig) -> None:
        self.cfg = cfg

    def dims(self) -> dict[str, int]:
        return {"d_in": 0, "d_vocab": self.cfg.vocab, "d_out": self.cfg.vocab, "n_ctx": 2 * self.cfg.half}

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        if evaluator != "train":
            raise ValueError(f"unknown evaluator {evaluator!r}; this task has {self.evaluators}")
        first = torch.randint(self.cfg.vocab, (n, self.cfg.half), generator=gen)
        tokens = torch.cat([first, first], dim=1)  # (n, 2L)
        targets = torch.full_like(tokens, IGNORE)
        targets[:, :-1] = tokens[:, 1:]
        return Batch(tokens[None], targets[None])

    def sample_runs(self, n: int, gens: list[torch.Generator], evaluator: str = "train") -> Batch:
        return Batch.stack([self.sample(n, g, evaluator) for g in gens])

    def extra_metrics(self, batch: Batch, logits: Tensor, patterns: dict[int, Tensor]) -> dict[str, Tensor]:
        """Loss on each repeat (``loss/first_repeat``, ``loss/second_repeat``) and ``prefix_match/L{l}H{h}``.

        The first-repeat loss averages predictions of tokens 1..L-1, the second
        of tokens L+1..2L-1 (each a copy of an earlier token); predicting token
        L (the repeat's first token) belongs to neither.
        """
        L = self.cfg.half
        R = logits.shape[0]
        ce = F.cross_entropy(logits[:, :, :-1].flatten(0, 2).float(), batch.targets[:, :, :-1].flatten(), reduction="none")
        ce = ce.view(R, batch.size, 2 * L - 1)
        out = {"loss/first_repeat": ce[:, :, : L - 1].mean((1, 2)), "loss/second_repeat": ce[:, :, L:].mean((1, 2))}
        for layer, pattern in patterns.items():
            s = prefix_matching_score(pattern, L)
            for h in range(s.shape[1]):
                out[f"prefix_match/L{layer}H{h}"] = s[:, h]
        return out
