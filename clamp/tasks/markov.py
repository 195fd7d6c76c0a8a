"""In-context Markov chains (Edelman et al. 2024, "The evolution of statistical induction heads").

Why this file exists: the other classic in-context-learning task.  Every
sequence comes from its own Markov chain over ``n_states`` states, with a
transition matrix drawn row by row from a symmetric Dirichlet(``alpha``) prior,
so the only way to predict well is to count transitions in the context.  Small
attention-only transformers first sit near the *unigram* solution (predict
the context's state frequencies), then jump to the *bigram* one (a statistical
induction head: a previous-token head in layer 0 feeding layer 1).

Reference losses are computed on the same evaluation sequences
(:func:`reference_predictions`): ``ref/unigram`` and ``ref/bigram`` are the
Bayes posterior predictives of a unigram and a bigram model under the same
Dirichlet(``alpha``) prior (counts plus ``alpha``); ``ref/oracle`` is the loss of
a model given the true transition matrix, which the bigram estimator approaches
as the context grows.  ``markov/bigram_progress`` puts the model between them:
0 at the unigram loss, 1 at the bigram loss.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from clamp.tasks.batch import IGNORE, Batch
from clamp.tasks.base import EvalView, TaskBase, standard_metrics
from clamp.tasks.markov_config import MarkovConfig  # the sampler reads its config




def reference_predictions(tokens: Tensor, n_states: int, alpha: float) -> tuple[Tensor, Tensor]:
    """Unigram and bigram posterior predictives at every position, from the context up to it.

    At position ``t`` (predicting ``tokens[t+1]``): unigram ``(count_j(x_0..x_t) + alpha) / (t + 1 + k alpha)``,
    bigram ``(count(x_t -> j in x_0..x_t) + alpha) / (count(x_t -> .) + k alpha)``.

    Args:
        tokens: ``[..., T]`` long states.

    Returns:
        ``(unigram, bigram)`` probabilities, each ``[..., T, k]``.

    Example:
        >>> uni, bi = reference_predictions(torch.tensor([0, 1, 0]), 2, 1.0)
        >>> [round(v, 4) for v in uni[2].tolist()], [round(v, 4) for v in bi[2].tolist()]  # after 0 1 0: counts (2, 1); 0->1 once
        ([0.6, 0.4], [0.3333, 0.6667])
    """
    k = n_states
    onehot = F.one_hot(tokens, k).float()  # (..., T, k)
    uni_counts = onehot.cumsum(-2)
    uni = (uni_counts + alpha) / (uni_counts.sum(-1, keepdim=True) + k * alpha)
    # transitions x_{s-1} -> x_s for s <= t, as a running (k x k) count
    trans = torch.zeros(*tokens.shape, k, k)
    trans[..., 1:, :, :] = onehot[..., :-1, :, None] * onehot[..., 1:, None, :]
    counts = trans.cumsum(-3)  # (..., T, k, k)
    row = (counts * onehot[..., :, :, None]).sum(-2)  # the row of the current state: (..., T, k)
    bi = (row + alpha) / (row.sum(-1, keepdim=True) + k * alpha)
    return uni, bi


def _ce(prob: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-probability of the targets per run, over non-ignored positions: ``[R]``."""
    mask = targets != IGNORE
    p = prob.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
    nll = -p.clamp_min(1e-30).log() * mask
    return nll.sum((1, 2)) / mask.sum((1, 2)).clamp_min(1)


class MarkovTask(TaskBase):
    """Sampler and metrics for :class:`MarkovConfig`.

    Example:
        >>> b = MarkovConfig(n_states=3, n_ctx=8).build().sample(2, torch.Generator().manual_seed(0))
        >>> b.tokens.shape, b.meta["transitions"].shape
        (torch.Size([1, 2, 8]), torch.Size([1, 2, 3, 3]))
    """

    evaluators = ("train",)

    def __init__(self, cfg: MarkovConfig) -> None:
        self.cfg = cfg

    def dims(self) -> dict[str, int]:
        k = self.cfg.n_states
        return {"d_in": 0, "d_vocab": k, "d_out": k, "n_ctx": self.cfg.n_ctx}

    def default_phase_rule(self):
        return self.cfg.default_phase_rule()

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        if evaluator != "train":
            raise ValueError(f"unknown evaluator {evaluator!r}; this task has {self.evaluators}")
        k, T = self.cfg.n_states, self.cfg.n_ctx
        # Dirichlet rows from normalised Gamma draws (torch's Gamma sampler takes no generator).
        P = _dirichlet(n, k, self.cfg.alpha, gen)  # (n, k, k), rows sum to 1
        u = torch.rand(n, T, generator=gen)
        states = torch.empty(n, T, dtype=torch.long)
        states[:, 0] = (u[:, 0:1] * k).long().clamp_max(k - 1)[:, 0]
        for t in range(1, T):
            cdf = P[torch.arange(n), states[:, t - 1]].cumsum(-1)  # (n, k)
            states[:, t] = (u[:, t : t + 1] > cdf).sum(-1).clamp_max(k - 1)
        targets = torch.full_like(states, IGNORE)
        targets[:, :-1] = states[:, 1:]
        return Batch(states[None], targets[None], meta={"transitions": P[None]})

    def reference_losses(self, batch: Batch) -> dict[str, Tensor]:
        """``ref/unigram``, ``ref/bigram`` and ``ref/oracle`` (the true transition matrix) per run, ``[R]`` each."""
        uni, bi = reference_predictions(batch.tokens, self.cfg.n_states, self.cfg.alpha)
        P = batch.meta["transitions"]  # (R, B, k, k)
        oracle = P.gather(2, batch.tokens[..., None].expand(*batch.tokens.shape, self.cfg.n_states))  # (R, B, T, k)
        return {"ref/unigram": _ce(uni, batch.targets), "ref/bigram": _ce(bi, batch.targets),
                "ref/oracle": _ce(oracle, batch.targets)}

    def eval_metrics(self, view: EvalView) -> dict[str, Tensor]:
        """Standard metrics, the reference losses, and ``markov/bigram_progress``
        (``(ref/unigram - loss) / (ref/unigram - ref/bigram)``)."""
        out = standard_metrics(view)
        refs = self.reference_losses(view.batch)
        out.update(refs)
        loss = out[f"{view.evaluator}/loss"]
        gap = (refs["ref/unigram"] - refs["ref/bigram"]).clamp_min(1e-6)
        out["markov/bigram_progress"] = (refs["ref/unigram"] - loss) / gap
        return out


def _dirichlet(n: int, k: int, alpha: float, gen: torch.Generator) -> Tensor:
    """``n`` random ``k x k`` row-stochastic matrices, rows ~ Dirichlet(alpha), drawn with ``gen`` only.

    Gamma(alpha) variates by Marsaglia and Tsang's method (boosted for alpha < 1), vectorised.
    """
    a = alpha if alpha >= 1 else alpha + 1
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    shape = (n, k, k)
    out = torch.zeros(shape)
    todo = torch.ones(shape, dtype=torch.bool)
    while todo.any():
        x = torch.randn(shape, generator=gen)
        u = torch.rand(shape, generator=gen)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (u.clamp_min(1e-30).log() < 0.5 * x * x + d - d * v + d * v.clamp_min(1e-30).log())
        take = ok & todo
        out = torch.where(take, d * v, out)
        todo = todo & ~take
    if alpha < 1:
        out = out * torch.rand(shape, generator=gen) ** (1.0 / alpha)
    return out / out.sum(-1, keepdim=True)
