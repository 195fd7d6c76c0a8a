"""Head scores: induction strength, previous-token and prefix-matching scores.

Why this file exists: these are the measures that show an induction head
forming (SCIENCE.md §1-2).  They are pure functions of an attention pattern
``[..., H, Tq, Tk]`` with known answers on hand-built patterns (a perfect
previous-token pattern scores 1, a uniform one about 0 for induction), and they
never modify their input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clamp.tasks.batch import IGNORE, Batch


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


# --- the metrics of an evaluation: the task's own, then the user's ------------------------------

def task_metrics(task, view) -> dict[str, Tensor]:
    """The task's metrics for one evaluation set (``task.eval_metrics(view)``).

    A task object without ``eval_metrics`` (an older duck-typed task) gets the standard
    metrics plus its ``extra_metrics`` on sets with patterns.
    """
    if hasattr(task, "eval_metrics"):
        return task.eval_metrics(view)
    from clamp.tasks.base import standard_metrics

    out = standard_metrics(view)
    if view.patterns and hasattr(task, "extra_metrics"):
        out.update(task.extra_metrics(view.batch, view.logits, view.patterns))
    return out


_RESERVED = ("train_batch/", "fired/")


def add_user_metric(out: dict[str, Tensor], fn, view) -> None:
    """Call a user metric ``fn(view)`` and add its values to ``out`` (in place).

    ``fn`` returns a ``[R]`` tensor (named ``fn.__name__``) or a dict of them (named by
    their keys).  A name that clashes with a metric already recorded, or a value of the
    wrong shape, raises :class:`~clamp.errors.ConfigError` naming the function.

    Example:
        >>> from types import SimpleNamespace
        >>> def mean_logit(view): return view.logits.mean((1, 2, 3))
        >>> out = {}; add_user_metric(out, mean_logit, SimpleNamespace(logits=torch.ones(2, 1, 1, 3)))
        >>> out["mean_logit"].tolist()
        [1.0, 1.0]
    """
    from clamp.errors import ConfigError

    name = getattr(fn, "__name__", repr(fn))
    value = fn(view)
    items = value.items() if isinstance(value, dict) else [(name, value)]
    R = view.logits.shape[0]
    for key, v in items:
        if not isinstance(key, str) or not key or key.startswith(_RESERVED):
            raise ConfigError(f"metric {name!r} returned the name {key!r}; use a non-empty name not starting with {_RESERVED}.")
        if key in out:
            raise ConfigError(f"metric {name!r} returns {key!r}, which the task already records; give it another name.")
        if not isinstance(v, Tensor) or tuple(v.shape) != (R,):
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ConfigError(f"metric {name!r} must return one value per run (a tensor of shape ({R},)) "
                              f"for {key!r}, got {shape}.")
        out[key] = v.detach()
