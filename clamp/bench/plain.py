"""The baseline: the flagship model and task trained by a plain PyTorch loop, no harness.

Why this file exists: the benchmark's speed targets are ratios against what a
researcher would write by hand.  This is that loop: ``nn.Linear`` layers,
attention as batched matmuls over ``[B, H, T, T]``, ``F.layer_norm``,
``torch.optim.Adam`` with its defaults, one run per model, the task's own
sampler for data (its item vectors looked up per position), nothing else.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clamp.tasks import FewShotConfig


class PlainAttention(nn.Module):
    """Causal multi-head attention with RoPE, written the ordinary way."""

    def __init__(self, D: int, H: int) -> None:
        super().__init__()
        self.H, self.dh = H, D // H
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:  # x: (B, T, D)
        B, T, D = x.shape
        q, k, v = (m(x).view(B, T, self.H, self.dh).transpose(1, 2) for m in (self.q, self.k, self.v))  # (B, H, T, dh)
        half = self.dh // 2
        q = torch.cat([q[..., :half] * cos - q[..., half:] * sin, q[..., :half] * sin + q[..., half:] * cos], -1)
        k = torch.cat([k[..., :half] * cos - k[..., half:] * sin, k[..., :half] * sin + k[..., half:] * cos], -1)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(self.dh)).masked_fill(mask, float("-inf")).softmax(-1)
        return self.o((att @ v).transpose(1, 2).reshape(B, T, D))


class PlainTransformer(nn.Module):
    """Singh et al.'s model: 2 attention-only pre-LN layers, RoPE, final LN, item/label embeddings."""

    def __init__(self, d_in: int, n_labels: int, D: int = 64, H: int = 8, L: int = 2) -> None:
        super().__init__()
        self.item = nn.Linear(d_in, D)
        self.label = nn.Embedding(n_labels, D)
        self.ln = nn.ModuleList(nn.LayerNorm(D) for _ in range(L))
        self.attn = nn.ModuleList(PlainAttention(D, H) for _ in range(L))
        self.ln_f = nn.LayerNorm(D)
        self.out = nn.Linear(D, n_labels)
        self.dh = D // H

    def forward(self, items: Tensor, tokens: Tensor, item_mask: Tensor) -> Tensor:  # (B, T, d_in), (B, T), (B, T)
        x = torch.where(item_mask[..., None], self.item(items), self.label(tokens))
        T, half = x.shape[1], self.dh // 2
        angles = torch.arange(T, dtype=torch.float32)[:, None] * (10_000.0 ** (-torch.arange(half) / half))
        cos, sin = angles.cos(), angles.sin()
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        for ln, attn in zip(self.ln, self.attn):
            x = x + attn(ln(x), cos, sin, mask)
        return self.out(self.ln_f(x))  # (B, T, n_labels)


def plain_step(task_cfg: FewShotConfig, seed: int = 0, batch_size: int = 32, lr: float = 1e-5) -> Callable[[], None]:
    """One Adam step of :class:`PlainTransformer` on a fresh batch, as a closure.

    Example:
        >>> step = plain_step(FewShotConfig(n_classes=10, d_in=8))
        >>> step()
    """
    task = task_cfg.build()
    torch.manual_seed(seed)
    model = PlainTransformer(task_cfg.d_in, task_cfg.n_labels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)

    def step() -> None:
        b = task.sample(batch_size, gen)
        logits = model(b.items[0], b.tokens[0], b.item_mask[0])
        loss = F.cross_entropy(logits[:, -1], b.targets[0, :, -1])
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)  # not loss.backward(): nnsight, imported by other modes, slows that down
        opt.step()

    return step
