"""Singh et al.'s few-shot in-context classification task, with synthetic items.

Why this file exists: it is the flagship task (docs/science.md §2).  A sequence is
``x1 l1 x2 l2 ... xq``: N item-label pairs then a query item whose class
appears exactly once in the context.  Labels are re-drawn per sequence from a
small vocabulary, so the task can only be solved in context.

Class vectors are synthetic (Omniglot/ResNet features in the paper): exemplar
``j`` of class ``k`` is ``(mu_k + eps * eta_kj) / sqrt(1 + eps^2)`` with
``mu_k, eta_kj ~ N(0, I/d)`` (Reddy 2023).  With ``shared > 0`` every class mean
is mixed with one fixed positive vector, ``mu_k = sqrt(1-c) g_k + sqrt(c) m``,
so classes correlate (cosine about ``c``) as ReLU features do.  Items have norm
about 1; ``item_scale`` multiplies them (``sqrt(d_in)`` gives unit-variance
entries, closer to the large norms of ResNet features).

Random streams (``streams``).  With ``"shared"`` (the default, kept so that
finished runs reproduce) every draw of a batch comes from the run's one data
generator in a fixed order, so changing ``n_labels`` changes the classes drawn
after it.  With ``"independent"`` each batch first takes three seeds from the
run's generator (a fixed number of draws whatever the configuration), and draws
the classes and exemplars, the labels (the label pair and the class -> label
map) and the order (which context pair holds the query's class) from three
generators seeded with them: changing the number of labels leaves every class,
exemplar and order draw unchanged.  The run's generator still carries the whole
state, so checkpoints resume bit-exactly.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from clamp.tasks.items import cluster_means, low_rank_means, non_negative
from clamp.tasks.measures import add_head_scores, induction_strength
from clamp.tasks.batch import IGNORE, Batch
from clamp.tasks.base import EvalView, TaskBase, standard_metrics
from clamp.tasks.fewshot_config import FewShotConfig  # the sampler reads its config

EVALUATORS = ("train", "heldout_pairs", "heldout_classes", "heldout_exemplars")




def _substreams(gen: torch.Generator, subs: list[torch.Generator]) -> list[torch.Generator]:
    """``subs`` (the labels', the classes' and the order's generators) reseeded from ``gen`` for one batch.

    The generator objects are reused (making new ones costs more than the draws).
    """
    for sub, seed in zip(subs, torch.randint(0, 2**62, (3,), generator=gen).tolist()):
        sub.manual_seed(seed)
    return subs


class FewShotTask(TaskBase):
    """Sampler and metrics for :class:`FewShotConfig`.

    Example:
        >>> task = FewShotConfig(n_classes=10).build()
        >>> b = task.sample(4, torch.Generator().manual_seed(0))
        >>> b.tokens.shape, b.items.shape
        (torch.Size([1, 4, 5]), torch.Size([1, 4, 5, 512]))
    """

    def __init__(self, cfg: FewShotConfig) -> None:
        self.cfg = cfg
        self._subs = [torch.Generator() for _ in range(3)]  # see _substreams
        gen = torch.Generator().manual_seed(cfg.vectors_seed)
        n_cls = cfg.n_classes + cfg.n_heldout_classes
        n_ex = cfg.n_exemplars + cfg.n_heldout_exemplars
        d = cfg.d_in
        mu = torch.randn(n_cls, d, generator=gen) / math.sqrt(d)
        mu = cluster_means(mu, cfg.clusters, cfg.cluster_spread, cfg.vectors_seed)
        mu = low_rank_means(mu, cfg.rank, cfg.vectors_seed)
        if cfg.shared > 0:
            m = torch.randn(d, generator=gen).abs() / math.sqrt(d)
            mu = math.sqrt(1 - cfg.shared) * mu + math.sqrt(cfg.shared) * m
        eta = torch.randn(n_cls, n_ex, d, generator=gen) / math.sqrt(d)
        eps = cfg.exemplar_noise
        vectors = (mu[:, None, :] + eps * eta) / math.sqrt(1 + eps**2)  # (classes, exemplars, d_in)
        self.vectors = non_negative(vectors, cfg.nonneg) * cfg.item_scale

        sets = list(itertools.combinations(range(cfg.n_labels), cfg.n_pairs))
        order = torch.randperm(len(sets), generator=gen).tolist()
        n_held = round(cfg.heldout_frac * len(sets))
        if cfg.heldout_frac > 0 and len(sets) >= 2:
            n_held = min(max(n_held, 1), len(sets) - 1)
        self.heldout_sets = torch.tensor([sets[i] for i in order[:n_held]], dtype=torch.long).view(-1, cfg.n_pairs)
        self.train_sets = torch.tensor([sets[i] for i in order[n_held:]], dtype=torch.long)
        N, T = cfg.n_pairs, self.seq_len
        self._item_pos = torch.tensor([2 * i for i in range(N)] + [T - 1])
        self._label_pos = torch.arange(1, 2 * N, 2)
        self._item_mask = torch.zeros(1, 1, T, dtype=torch.bool)
        self._item_mask[..., self._item_pos] = True
        # The item vectors each distribution draws from, as one table ([classes * exemplars, d_in]).
        seen_cls, held_cls = slice(0, cfg.n_classes), slice(cfg.n_classes, None)
        seen_ex, held_ex = slice(0, cfg.n_exemplars), slice(cfg.n_exemplars, None)
        flat = lambda v: v.reshape(-1, d).contiguous()  # noqa: E731
        self.tables = {
            "train": flat(self.vectors[seen_cls, seen_ex]),
            "heldout_classes": flat(self.vectors[held_cls, seen_ex]),
            "heldout_exemplars": flat(self.vectors[seen_cls, held_ex]),
        }
        self.tables["heldout_pairs"] = self.tables["train"]  # the same items (only the label pairs differ)
        self.evaluators = tuple(
            e for e in EVALUATORS
            if not (e == "heldout_pairs" and n_held == 0)
            and not (e == "heldout_classes" and cfg.n_heldout_classes == 0)
            and not (e == "heldout_exemplars" and cfg.n_heldout_exemplars == 0)
        )

    @property
    def seq_len(self) -> int:
        return 2 * self.cfg.n_pairs + 1

    def dims(self) -> dict[str, int]:
        return {"d_in": self.cfg.d_in, "d_vocab": self.cfg.n_labels, "d_out": self.cfg.n_labels, "n_ctx": self.seq_len}

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        """``n`` sequences (leading run axis of size 1) from the named distribution."""
        return self.sample_runs(n, [gen], evaluator)

    def sample_runs(self, n: int, gens: list[torch.Generator], evaluator: str = "train") -> Batch:
        """``n`` sequences for each of ``len(gens)`` runs, run ``r`` drawn with ``gens[r]`` only.

        The random draws are per run (so a run's data does not depend on which
        runs it is packed with); the tensors are then built once for all runs.
        """
        if evaluator not in self.evaluators:
            raise ValueError(f"unknown evaluator {evaluator!r}; this task has {self.evaluators}")
        cfg, N, T = self.cfg, self.cfg.n_pairs, self.seq_len
        sets = self.heldout_sets if evaluator == "heldout_pairs" else self.train_sets
        if evaluator == "heldout_classes":
            cls_lo, cls_n = cfg.n_classes, cfg.n_heldout_classes
        else:
            cls_lo, cls_n = 0, cfg.n_classes
        ex_n = cfg.n_heldout_exemplars if evaluator == "heldout_exemplars" else cfg.n_exemplars

        draws = []
        for gen in gens:  # every random draw of run r comes from gens[r] (or streams seeded from it), in this order
            g_lab, g_cls, g_ord = _substreams(gen, self._subs) if cfg.streams == "independent" else (gen, gen, gen)
            draws.append((
                torch.randint(len(sets), (n,), generator=g_lab),  # the label pair
                torch.rand(n, N, generator=g_lab),  # keys of a random class -> label map
                torch.rand(n, cls_n, generator=g_cls),  # keys of a random choice of N distinct classes
                torch.randint(ex_n, (n, N + 1), generator=g_cls),  # context exemplars, then the query's
                torch.randint(N, (n,), generator=g_ord),  # which context pair the query matches
            ))
        set_idx, order_keys, class_keys, ex, q = (torch.stack(x) for x in zip(*draws))  # each (R, n, ...)
        order = order_keys.argsort(-1)
        classes = class_keys.topk(N, dim=-1, largest=False).indices  # the N smallest keys, smallest first
        R = len(gens)
        labels = sets[set_idx].gather(2, order)  # (R, n, N)
        item_cls = torch.cat([classes, classes.gather(2, q[..., None])], dim=2)  # (R, n, N+1), within the range
        item_pos = self._item_pos
        label_pos = self._label_pos

        # Items are rows of this distribution's table (classes x exemplars it draws from).
        item_ids = torch.zeros(R, n, T, dtype=torch.long)
        item_ids[:, :, item_pos] = item_cls * ex_n + ex
        tokens = torch.zeros(R, n, T, dtype=torch.long)
        tokens[:, :, label_pos] = labels
        targets = torch.full((R, n, T), IGNORE, dtype=torch.long)
        targets[:, :, T - 1] = labels.gather(2, q[..., None])[..., 0]
        meta = {
            "correct_pos": 2 * q + 1,  # key position of the correct label token
            "label_pos": label_pos.expand(R, n, N).clone(),
            "context_labels": labels,  # label id at each label position
            "query_class": item_cls[..., -1] + cls_lo,
        }
        return Batch(tokens, targets, None, self._item_mask.expand(R, n, T), meta,
                     item_table=self.tables[evaluator], item_ids=item_ids)

    def eval_metrics(self, view: EvalView) -> dict[str, Tensor]:
        """Loss and accuracy on every set; on ``train`` also previous-token and induction scores per head."""
        out = standard_metrics(view)
        if view.patterns:
            out.update(self._induction_metrics(view.batch, view.patterns))
        return out

    def default_phase_rule(self):
        """Singh et al.'s learning time: ``train/loss`` below 0.4 ln 2 (the config's rule)."""
        return self.cfg.default_phase_rule()

    def _induction_metrics(self, batch: Batch, patterns: dict[int, Tensor]) -> dict[str, Tensor]:
        """Induction strength of every head in layers >= 1: ``induction/L{l}H{h}``, each ``[R]``."""
        out: dict[str, Tensor] = {}
        for layer, pattern in patterns.items():
            if layer < 1:
                continue
            s = induction_strength(pattern, self.seq_len - 1, batch.meta["correct_pos"], batch.meta["label_pos"])
            add_head_scores(out, "induction", layer, s)
        return out
