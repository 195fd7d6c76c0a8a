"""Olsson et al.'s (2022) measures of in-context learning and induction heads.

Why this file exists: these are the quantities that show induction heads forming
on natural text (SCIENCE.md §1, §5): the per-token loss and the in-context
learning (ICL) score, and per-head prefix-matching, copying and previous-token
scores.  Every function is pure, works on the packed run axis ``R``, and has a
known answer on a hand-built input (tests/test_metrics_olsson.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clamp.tasks.batch import IGNORE


def per_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy at each position, per run, over sequences whose target there is not ``IGNORE``.

    Args:
        logits: ``[R, B, T, C]``; targets: ``[R, B, T]``.

    Returns:
        ``[R, T]``; NaN at positions with no target in any sequence.

    Example:
        >>> per_token_loss(torch.zeros(1, 2, 2, 4), torch.tensor([[[0, 1], [2, IGNORE]]]))[0].tolist() == [
        ...     torch.log(torch.tensor(4.0)).item()] * 2
        True
    """
    R, B, T, C = logits.shape
    mask = (targets != IGNORE).float()
    ce = F.cross_entropy(logits.reshape(-1, C).float(), targets.reshape(-1).clamp_min(0), reduction="none").view(R, B, T)
    n = mask.sum(1)
    return torch.where(n > 0, (ce * mask).sum(1) / n.clamp_min(1), torch.full_like(n, float("nan")))


def icl_positions(n_ctx: int) -> tuple[int, int]:
    """Olsson's early and late positions (tokens 50 and 500 of 512), scaled to a context of ``n_ctx`` predictions.

    Example:
        >>> icl_positions(512), icl_positions(64)
        ((49, 499), (5, 61))
    """
    early = max(0, round(n_ctx * 50 / 512) - 1)
    late = min(n_ctx - 1, max(early + 1, round(n_ctx * 500 / 512) - 1))
    return early, late


def icl_score(token_loss: Tensor, early: int, late: int) -> Tensor:
    """In-context learning score: loss at position ``late`` minus loss at ``early`` (more negative = more ICL).

    Args:
        token_loss: ``[R, T]`` per-position loss (:func:`per_token_loss`).

    Returns:
        ``[R]``.

    Example:
        >>> icl_score(torch.tensor([[4.0, 3.0, 2.5]]), 0, 2)
        tensor([-1.5000])
    """
    return token_loss[:, late] - token_loss[:, early]


def icl_score_band(token_loss: Tensor, early: int, late: int, width: int) -> Tensor:
    """A less noisy ICL score: mean loss over ``width`` positions ending at ``late`` minus over ``width`` starting at ``early``.

    Example:
        >>> icl_score_band(torch.tensor([[4.0, 3.0, 2.0, 1.0]]), 0, 3, 2)
        tensor([-2.])
    """
    T = token_loss.shape[1]
    lo = token_loss[:, early : min(early + width, T)].nanmean(1)
    hi = token_loss[:, max(late - width + 1, 0) : late + 1].nanmean(1)
    return hi - lo


def induction_targets(tokens: Tensor) -> Tensor:
    """Where an induction head should attend: ``[.., T, T]`` bool, True at ``(i, j)`` when ``j <= i``,
    ``j >= 1`` and ``tokens[j - 1] == tokens[i]`` with ``j - 1 < i`` (the token after an earlier occurrence).

    Args:
        tokens: ``[R, B, T]`` long.

    Example:
        >>> induction_targets(torch.tensor([[[5, 6, 5]]]))[0, 0].nonzero().tolist()
        [[2, 1]]
    """
    T = tokens.shape[-1]
    same = tokens[..., :, None] == tokens[..., None, :]  # (.., i, j'): tokens[i] == tokens[j']
    prev = torch.zeros_like(same)
    prev[..., :, 1:] = same[..., :, :-1]  # (i, j): tokens[i] == tokens[j - 1]
    i = torch.arange(T, device=tokens.device)
    earlier = (i[None, :] - 1) < i[:, None]  # j - 1 < i
    return prev & earlier & (i[None, :] <= i[:, None])


def prefix_matching(pattern: Tensor, targets: Tensor, rows: Tensor | None = None) -> Tensor:
    """Prefix-matching score of every head: attention mass on the induction targets, averaged over query rows.

    Args:
        pattern: ``[R, B, H, T, T]``.
        targets: ``[R, B, T, T]`` bool (:func:`induction_targets`).
        rows: ``[R, B, T]`` bool, the query positions to average over (e.g. the repeated part);
            default every row that has at least one target.

    Returns:
        ``[R, H]``; rows without a target never count.

    Example:
        >>> p = torch.zeros(1, 1, 1, 3, 3); p[0, 0, 0, :, 0] = 1; p[0, 0, 0, 2] = torch.tensor([0.0, 0.75, 0.25])
        >>> prefix_matching(p, induction_targets(torch.tensor([[[5, 6, 5]]])))
        tensor([[0.7500]])
    """
    has = targets.any(-1)  # (R, B, T)
    use = has if rows is None else (has & rows)
    mass = (pattern * targets[:, :, None].to(pattern.dtype)).sum(-1)  # (R, B, H, T)
    w = use[:, :, None].to(pattern.dtype)
    return (mass * w).sum((1, 3)) / w.sum((1, 3)).clamp_min(1)


def ov_eigen_copying(ov: Tensor) -> Tensor:
    """Olsson/Elhage's copying score of a circuit matrix: ``sum(eig) / sum(|eig|)`` (1 copies, -1 anti-copies).

    Args:
        ov: ``[..., n, n]`` square matrices (e.g. the OV circuit from tokens to logits, or any
            matrix with the same nonzero eigenvalues).

    Returns:
        ``[...]``; 0 for an all-zero matrix.

    Example:
        >>> ov_eigen_copying(torch.stack([torch.eye(3), -torch.eye(3)])).tolist()
        [1.0, -1.0]
    """
    ev = torch.linalg.eigvals(ov.double())
    num, den = ev.real.sum(-1), ev.abs().sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num)).to(torch.float32)


def copying_scores(model, layer: int) -> Tensor:
    """Copying score of every head of ``layer`` from the model's weights: ``[R, H]``.

    The head's OV circuit from input tokens to output logits, ``W_E W_V^h W_O^h W_U``
    (``[V, C]``, layer norms left out as in Olsson et al.), scored by
    :func:`ov_eigen_copying` through the cyclic ``W_O^h W_U W_E W_V^h`` (``[dh, dh]``, the same
    nonzero eigenvalues).  Needs ``d_vocab == d_out`` (tokens predict tokens).

    Example:
        >>> # copying_scores(trainer.model, 1) -> tensor [R, H]
    """
    cfg = model.cfg
    H, dh = cfg.n_heads, cfg.d_head_resolved
    attn = model.blocks[layer].attn
    E = model.token_embed  # (R, V, D)
    U = model.unembed.weight  # (R, D, C)
    Wv = attn.W_V.weight.view(-1, cfg.d_model, H, dh).permute(0, 2, 1, 3)  # (R, H, D, dh)
    Wo = attn.W_O.weight.view(-1, H, dh, cfg.d_model)  # (R, H, dh, D)
    UE = (U @ E)[:, None]  # (R, 1, D, D): C == V
    small = Wo @ UE @ Wv  # (R, H, dh, dh)
    return ov_eigen_copying(small.detach())
