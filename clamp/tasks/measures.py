"""The measures: head scores and losses that show an induction head forming, in one place.

Why this file exists: these are the quantities every task records and the analyses
reuse -- Singh et al.'s induction strength, the previous-token score, two forms of
prefix matching, copying, per-run and per-token losses and Olsson et al.'s
in-context-learning (ICL) score.  They are pure functions on the packed run axis ``R``
(a pattern is ``[R, B, H, Tq, Tk]``), never modify their input, and each has a known
answer on a hand-built input (a perfect previous-token pattern scores 1).  They live
next to the tasks that record them (``eval_metrics``); the trainer and the analyses
import them from here.

Two prefix-matching scores, side by side, because they answer on different inputs:

- :func:`prefix_matching_score` is Olsson et al.'s on a sequence repeated at a *fixed*
  offset (the repeat task without random prefixes): the attention from position
  ``half + j`` to ``j + 1``, a direct index, cheap enough for every evaluation;
- :func:`prefix_matching` works on *any* tokens (text, random offsets): the attention mass
  on every earlier position that follows an occurrence of the current token
  (:func:`induction_targets`), averaged over the rows that have one.  On a clean fixed-offset
  repeat the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clamp.names import head
from clamp.tasks.batch import IGNORE, Batch


def add_head_scores(out: dict[str, Tensor], family: str, layer: int, scores: Tensor) -> None:
    """Add ``[R, H]`` per-head ``scores`` of ``layer`` to ``out`` as ``{family}/L{layer}H{h}`` (:func:`clamp.names.head`).

    Example:
        >>> out = {}; add_head_scores(out, "prev_token", 0, torch.tensor([[0.5, 1.0]])); sorted(out)
        ['prev_token/L0H0', 'prev_token/L0H1']
    """
    for h in range(scores.shape[1]):
        out[head(family, layer, h)] = scores[:, h]


def induction_strength(pattern: Tensor, query_pos: int, correct_pos: Tensor, label_pos: Tensor) -> Tensor:
    """Singh et al.'s induction strength of every head, per run.

    The mean over sequences of (attention from the query to the correct label
    token) minus (mean attention to the other, incorrect, label tokens); in
    [-1, 1].  With two context pairs this is exactly correct minus incorrect.

    Args:
        pattern: ``[R, B, H, Tq, Tk]`` attention pattern.
        query_pos: the query position (row of the pattern).
        correct_pos: ``[R, B]`` long, key position of the correct label token.
        label_pos: ``[R, B, N]`` long, key positions of all N label tokens.

    Returns:
        ``[R, H]`` induction strength.

    Example:
        >>> p = torch.zeros(1, 1, 1, 5, 5); p[..., 4, 1] = 1
        >>> induction_strength(p, 4, torch.tensor([[1]]), torch.tensor([[[1, 3]]]))
        tensor([[1.]])
    """
    row = pattern[:, :, :, query_pos, :]  # (R, B, H, Tk)
    R, B, H, _ = row.shape
    at_labels = row.gather(-1, label_pos[:, :, None, :].expand(R, B, H, label_pos.shape[-1]))  # (R,B,H,N)
    at_correct = row.gather(-1, correct_pos[:, :, None, None].expand(R, B, H, 1))[..., 0]  # (R,B,H)
    n_wrong = label_pos.shape[-1] - 1
    wrong = (at_labels.sum(-1) - at_correct) / max(n_wrong, 1)
    return (at_correct - wrong).mean(dim=1)


def prev_token_score(pattern: Tensor) -> Tensor:
    """Mean attention from each position i >= 1 to i - 1, per head.

    Args:
        pattern: ``[R, B, H, T, T]``.

    Returns:
        ``[R, H]``; 1 for a perfect previous-token head.

    Example:
        >>> p = torch.zeros(1, 1, 1, 3, 3); p[0, 0, 0, 0, 0] = 1; p[0, 0, 0, 1, 0] = 1; p[0, 0, 0, 2, 1] = 1
        >>> prev_token_score(p)
        tensor([[1.]])
    """
    sub = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # (R, B, H, T-1)
    return sub.mean(dim=(1, 3))


def prefix_matching_score(pattern: Tensor, half: int) -> Tensor:
    """Olsson et al.'s prefix-matching score on a repeated sequence of length ``2 * half``.

    Mean attention from position ``half + j`` (second repeat) to ``j + 1`` (the
    token after the earlier occurrence), over ``j = 0 .. half - 1``.

    Returns:
        ``[R, H]``.

    Example:
        >>> p = torch.zeros(1, 1, 1, 4, 4); p[0, 0, 0, 2, 1] = 1; p[0, 0, 0, 3, 2] = 1
        >>> prefix_matching_score(p, 2)
        tensor([[1.]])
    """
    rows = torch.arange(half, 2 * half, device=pattern.device)
    cols = torch.arange(1, half + 1, device=pattern.device)
    return pattern[..., rows, cols].mean(dim=(1, 3))


def loss_and_accuracy(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy per run over positions whose target is not ``IGNORE``.

    Args:
        logits: ``[R, B, T, C]``; targets: ``[R, B, T]``.

    Returns:
        ``(loss [R], accuracy [R])``.
    """
    R = logits.shape[0]
    mask = targets != IGNORE
    ce = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten().clamp_min(0), reduction="none").view(R, -1)
    correct = (logits.argmax(-1) == targets).view(R, -1).float()
    m = mask.view(R, -1).float()
    n = m.sum(1).clamp_min(1)
    return (ce * m).sum(1) / n, (correct * m).sum(1) / n


def per_run_loss(logits: Tensor, batch: Batch) -> Tensor:
    """Training loss per run ``[R]`` (mean cross-entropy over targeted positions); no accuracy on the hot path."""
    R, targets = logits.shape[0], batch.targets
    mask = (targets != IGNORE).view(R, -1).float()
    ce = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten().clamp_min(0), reduction="none").view(R, -1)
    return (ce * mask).sum(1) / mask.sum(1).clamp_min(1)


# --- Olsson et al.'s measures: per-token loss, ICL score, prefix matching on any tokens, copying -----

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
