"""Bursty, Zipfian in-context classification (Chan et al. 2022; Reddy 2023).

Why this file exists: the task that separates in-context from in-weights
learning.  Each of ``n_classes`` classes has a fixed label (one of
``n_labels``), so a model can learn the class -> label map in its weights; but
in *bursty* sequences (probability ``burstiness``) the query's class also
appears in the context with its label, so copying the label from the context
works too.  Items are ``x = (mu_k + eps * eta) / sqrt(1 + eps^2)`` with a fresh
``eta`` per occurrence (within-class noise ``eps``, Reddy 2023); classes are
drawn from a Zipf law of exponent ``zipf`` (0: uniform).

Sequence: ``x1 l1 ... xN lN xq``; the loss is on the query only.  A bursty
sequence holds ``N / burst`` classes ``burst`` times each and the query is one
of them; otherwise the ``N`` context classes and the query class are drawn
independently.  Evaluation sets (docs/science.md §5):

- ``train``: the training distribution;
- ``in_context``: novel classes (never trained on) with labels assigned at random
  per sequence, bursty: only in-context learning solves it;
- ``swapped``: training classes, bursty, with labels re-drawn per sequence: in-context
  learning solves it, in-weights learning predicts the wrong (memorised) label;
- ``in_weights``: training classes, the query's class absent from the context:
  only in-weights learning solves it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from clamp.tasks.batch import IGNORE, Batch
from clamp.tasks.base import EvalView, TaskBase, standard_metrics
from clamp.tasks.bursty_config import BurstyConfig  # the sampler reads its config

EVALUATORS = ("train", "in_context", "swapped", "in_weights")




class BurstyTask(TaskBase):
    """Sampler for :class:`BurstyConfig`.

    Example:
        >>> b = BurstyConfig(n_classes=64, d_in=16).build().sample(3, torch.Generator().manual_seed(0))
        >>> b.tokens.shape, b.items.shape
        (torch.Size([1, 3, 17]), torch.Size([1, 3, 17, 16]))
    """

    evaluators = EVALUATORS

    def __init__(self, cfg: BurstyConfig) -> None:
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.vectors_seed)
        d = cfg.d_in
        self.means = torch.randn(cfg.n_classes + cfg.n_novel_classes, d, generator=gen) / math.sqrt(d)
        self.labels = torch.randint(cfg.n_labels, (cfg.n_classes,), generator=gen)  # the fixed class -> label map
        ranks = torch.arange(1, cfg.n_classes + 1, dtype=torch.float64)
        self.class_probs = (ranks ** -cfg.zipf / (ranks ** -cfg.zipf).sum()).float()
        T = 2 * cfg.n_pairs + 1
        self._item_mask = torch.zeros(T, dtype=torch.bool)
        self._item_mask[0:T:2] = True

    def dims(self) -> dict[str, int]:
        c = self.cfg
        return {"d_in": c.d_in, "d_vocab": c.n_labels, "d_out": c.n_labels, "n_ctx": 2 * c.n_pairs + 1}

    def default_phase_rule(self):
        return self.cfg.default_phase_rule()

    def _bursty_context(self, n: int, pool: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Context classes ``[n, N]`` (N/B classes x B copies, shuffled) and the query class ``[n]``."""
        c = self.cfg
        m = c.n_pairs // c.burst
        picks = torch.multinomial(pool.expand(n, -1), m, replacement=False, generator=gen)  # distinct classes
        ctx = picks.repeat_interleave(c.burst, dim=1)  # (n, N)
        order = torch.rand(n, c.n_pairs, generator=gen).argsort(1)
        ctx = ctx.gather(1, order)
        query = picks.gather(1, torch.randint(m, (n, 1), generator=gen))[:, 0]
        return ctx, query

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        if evaluator not in EVALUATORS:
            raise ValueError(f"unknown evaluator {evaluator!r}; this task has {EVALUATORS}")
        c = self.cfg
        N, K = c.n_pairs, c.n_classes
        probs = self.class_probs
        if evaluator == "train":
            bursty = torch.rand(n, generator=gen) < c.burstiness
            b_ctx, b_q = self._bursty_context(n, probs, gen)
            i_ctx = torch.multinomial(probs.expand(n, -1), N, replacement=True, generator=gen)
            i_q = torch.multinomial(probs, n, replacement=True, generator=gen)
            ctx = torch.where(bursty[:, None], b_ctx, i_ctx)
            query = torch.where(bursty, b_q, i_q)
            ctx_labels, q_label = self.labels[ctx], self.labels[query]
        elif evaluator == "in_weights":
            query = torch.multinomial(probs, n, replacement=True, generator=gen)
            ctx = torch.multinomial(probs.expand(n, -1), N, replacement=True, generator=gen)
            clash = ctx == query[:, None]  # redraw context classes equal to the query's (shift to the next class)
            ctx = torch.where(clash, (ctx + 1) % K, ctx)
            ctx_labels, q_label = self.labels[ctx], self.labels[query]
        else:
            pool = torch.ones(c.n_novel_classes) if evaluator == "in_context" else probs
            ctx, query = self._bursty_context(n, pool, gen)
            # labels drawn per sequence: distinct labels for the context's classes
            m = N // c.burst
            perm = torch.rand(n, c.n_labels, generator=gen).argsort(1)[:, :m]  # (n, m) labels
            uniq = torch.sort(ctx, dim=1).values[:, :: c.burst]  # the m distinct classes, sorted
            slot = (ctx[:, :, None] == uniq[:, None, :]).float().argmax(-1)  # (n, N) index into uniq
            ctx_labels = perm.gather(1, slot)
            q_slot = (query[:, None] == uniq).float().argmax(-1)
            q_label = perm.gather(1, q_slot[:, None])[:, 0]
            if evaluator == "in_context":
                ctx, query = ctx + K, query + K  # novel classes live after the training ones
        eta = torch.randn(n, N + 1, c.d_in, generator=gen) / math.sqrt(c.d_in)
        cls = torch.cat([ctx, query[:, None]], dim=1)  # (n, N+1)
        x = (self.means[cls] + c.noise * eta) / math.sqrt(1 + c.noise**2)
        T = 2 * N + 1
        items = torch.zeros(n, T, c.d_in)
        items[:, self._item_mask] = x
        tokens = torch.zeros(n, T, dtype=torch.long)
        tokens[:, 1:T:2] = ctx_labels
        targets = torch.full((n, T), IGNORE, dtype=torch.long)
        targets[:, -1] = q_label
        mask = self._item_mask.expand(n, T)
        return Batch(tokens[None], targets[None], items[None], mask[None],
                     meta={"query_class": query[None], "in_context": (ctx == query[:, None]).any(1)[None]})

    def eval_metrics(self, view: EvalView) -> dict[str, Tensor]:
        return standard_metrics(view)
