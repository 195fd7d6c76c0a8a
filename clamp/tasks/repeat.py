"""Repeated random token sequences (Olsson et al. 2022).

Why this file exists: the classic induction probe.  A sequence is ``L`` random
tokens followed by the same ``L`` tokens again; next-token loss on the second
repeat collapses once induction heads form, while the first stays at chance.

With the defaults (the legacy layout) the repeat always starts at position
``L``, so a single *positional* head (attend to ``i - L + 1``) can copy without
any induction: a 1-layer model solves it.  ``min_half`` (segment length drawn
per sequence from ``[min_half, half]``) and ``max_prefix`` (a random-length
prefix of fresh tokens before the segment) move the repeat around, so that only
a head that finds the earlier occurrence of the current token by content (an
induction head, which needs a previous-token head below it or smeared keys)
can predict it.  Positions after the repeat are filled with fresh tokens.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from clamp.tasks.measures import (add_head_scores, copying_scores, induction_targets, prefix_matching,
                                  prefix_matching_score)
from clamp.tasks.batch import IGNORE, Batch
from clamp.tasks.base import EvalView, TaskBase, standard_metrics
from clamp.tasks.repeat_config import RepeatConfig  # the sampler reads its config




class RepeatTask(TaskBase):
    """Sampler and metrics for :class:`RepeatConfig`.

    Example:
        >>> b = RepeatConfig(vocab=16, half=4, min_half=2, max_prefix=3).build().sample(2, torch.Generator().manual_seed(0))
        >>> b.tokens.shape, sorted(b.meta)
        (torch.Size([1, 2, 11]), ['first_rows', 'second_rows'])
    """

    evaluators = ("train",)

    def __init__(self, cfg: RepeatConfig) -> None:
        self.cfg = cfg

    @property
    def n_ctx(self) -> int:
        return self.cfg.max_prefix + 2 * self.cfg.half

    def dims(self) -> dict[str, int]:
        return {"d_in": 0, "d_vocab": self.cfg.vocab, "d_out": self.cfg.vocab, "n_ctx": self.n_ctx}

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        if evaluator != "train":
            raise ValueError(f"unknown evaluator {evaluator!r}; this task has {self.evaluators}")
        cfg = self.cfg
        if cfg.legacy:
            first = torch.randint(cfg.vocab, (n, cfg.half), generator=gen)
            tokens = torch.cat([first, first], dim=1)  # (n, 2L)
            targets = torch.full_like(tokens, IGNORE)
            targets[:, :-1] = tokens[:, 1:]
            return Batch(tokens[None], targets[None])
        T, H = self.n_ctx, cfg.half
        tokens = torch.randint(cfg.vocab, (n, T), generator=gen)  # fresh tokens everywhere, then the copy
        lo = cfg.min_half if cfg.min_half is not None else H
        seg = torch.randint(lo, H + 1, (n,), generator=gen)  # segment length per sequence
        start = torch.randint(0, cfg.max_prefix + 1, (n,), generator=gen)  # where the segment starts
        pos = torch.arange(T)
        rel = pos[None, :] - (start + seg)[:, None]  # position within the second segment
        in_second = (rel >= 0) & (rel < seg[:, None])
        src = (start[:, None] + rel).clamp(0, T - 1)
        tokens = torch.where(in_second, tokens.gather(1, src), tokens)
        targets = torch.full_like(tokens, IGNORE)
        targets[:, :-1] = tokens[:, 1:]
        # Rows (prediction positions) whose target is inside a segment, excluding each segment's first token:
        # in the second one a copy that only induction can predict, in the first one fresh tokens (chance).
        first_rows = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + seg - 1)[:, None])
        second_rows = (rel >= 0) & (rel < (seg - 1)[:, None])
        return Batch(tokens[None], targets[None], meta={"first_rows": first_rows[None], "second_rows": second_rows[None]})

    def eval_metrics(self, view: EvalView) -> dict[str, Tensor]:
        out = standard_metrics(view)
        if view.evaluator == "train":
            out.update(self._repeat_metrics(view.batch, view.logits, view.patterns, view.model))
        return out

    def default_phase_rule(self):
        """The config's rule (one definition: :meth:`RepeatConfig.default_phase_rule`)."""
        return self.cfg.default_phase_rule()

    def _repeat_metrics(self, batch: Batch, logits: Tensor, patterns: dict[int, Tensor], model=None) -> dict[str, Tensor]:
        """Loss on each repeat (``loss/first_repeat``, ``loss/second_repeat``) and ``prefix_match/L{l}H{h}``.

        The first-repeat loss averages predictions of tokens 2..L of the first segment, the
        second of tokens 2..L of the second segment (each a copy of an earlier token);
        predicting the repeat's first token belongs to neither.  Outside the legacy layout
        the randomised task also records ``copying/L{l}H{h}`` (OV-circuit copying score)
        and ``prefix_match/max`` (the best head).
        """
        R = logits.shape[0]
        if self.cfg.legacy:
            L = self.cfg.half
            ce = F.cross_entropy(logits[:, :, :-1].flatten(0, 2).float(), batch.targets[:, :, :-1].flatten(), reduction="none")
            ce = ce.view(R, batch.size, 2 * L - 1)
            out = {"loss/first_repeat": ce[:, :, : L - 1].mean((1, 2)), "loss/second_repeat": ce[:, :, L:].mean((1, 2))}
            for layer, pattern in patterns.items():
                add_head_scores(out, "prefix_match", layer, prefix_matching_score(pattern, L))
            return out
        ce = F.cross_entropy(logits.flatten(0, 2).float(), batch.targets.flatten().clamp_min(0), reduction="none")
        ce = ce.view(R, batch.size, -1)
        out = {}
        for key, rows in (("first", batch.meta["first_rows"]), ("second", batch.meta["second_rows"])):
            w = rows.float()
            out[f"loss/{key}_repeat"] = (ce * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)
        # Prefix matching: from each second-segment query to the token after the earlier occurrence
        # of the query's token (only rows whose target is that copy).
        targets = induction_targets(batch.tokens)
        best = None
        for layer, pattern in patterns.items():
            s = prefix_matching(pattern, targets, batch.meta["second_rows"])
            add_head_scores(out, "prefix_match", layer, s)
            best = s.max(1).values if best is None else torch.maximum(best, s.max(1).values)
            if model is not None:
                add_head_scores(out, "copying", layer, copying_scores(model, layer))
        if best is not None:
            out["prefix_match/max"] = best
        return out
