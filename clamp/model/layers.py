"""The packed building blocks: hook points, per-run linear maps and LayerNorms, rotary positions.

Why this file exists: both the transformer (:mod:`clamp.model.transformer`) and its
initialisation schemes (:mod:`clamp.model.init`, which dispatch on these classes) need
them; here, below both, neither has to import the other.  Every parameter has a leading
run axis ``R``: run ``r``'s slice is that run's own layer.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from clamp.model.layernorm import run_layer_norm


class HookPoint(nn.Identity):
    """A named identity module: the place to read or replace an activation."""


class RunLinear(nn.Module):
    """``R`` independent linear maps: weight ``[R, d_in, d_out]``, optional bias ``[R, d_out]``."""

    def __init__(self, n_runs: int, d_in: int, d_out: int, bias: bool) -> None:
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.weight = nn.Parameter(torch.empty(n_runs, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(n_runs, d_out)) if bias else None

    def init_run(self, r: int, gen: torch.Generator) -> None:
        # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1.0 / math.sqrt(self.d_in) if self.d_in else 0.0
        self.weight.data[r] = (torch.rand(self.d_in, self.d_out, generator=gen) * 2 - 1) * bound
        if self.bias is not None:
            self.bias.data[r] = (torch.rand(self.d_out, generator=gen) * 2 - 1) * bound

    def forward(self, x: Tensor) -> Tensor:  # [R, ..., d_in] -> [R, ..., d_out]
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-1])  # (R, N, d_in)
        if self.bias is None:
            out = torch.bmm(flat, self.weight)
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), flat, self.weight)
        return out.view(*shape[:-1], self.d_out)


class RunLayerNorm(nn.Module):
    """LayerNorm with a per-run gain ``[R, D]`` and bias ``[R, D]``."""

    def __init__(self, n_runs: int, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_runs, d))
        self.bias = nn.Parameter(torch.zeros(n_runs, d))

    def init_run(self, r: int, gen: torch.Generator) -> None:
        self.weight.data[r] = 1.0
        self.bias.data[r] = 0.0

    def forward(self, x: Tensor) -> Tensor:  # [R, B, T, D]
        return run_layer_norm(x, self.weight, self.bias)


def rope_tables(T: int, dh: int, base: float, device: torch.device) -> tuple[Tensor, Tensor]:
    half = dh // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float32, device=device) / half)
    angles = torch.arange(T, dtype=torch.float32, device=device)[:, None] * freqs  # (T, half)
    return angles.cos(), angles.sin()


def rope(x: Tensor, base: float) -> Tensor:
    """Rotary position embedding over the last dim of ``x`` ``[R, B, T, H, dh]``."""
    cos, sin = rope_tables(x.shape[2], x.shape[-1], base, x.device)
    cos, sin = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)  # (T, 1, half)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def forward_with_cache(model: nn.Module, batch: object, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
    """``model(batch)`` with the activations at the named hook points (``model.hook_point(name)``) saved, detached.

    The hooks are removed again whatever happens, so no trace of the caching outlives the call.
    """
    cache: dict[str, Tensor] = {}
    handles = []
    try:
        for name in names:
            def save(_m: nn.Module, _i: object, out: Tensor, name: str = name) -> None:
                cache[name] = out.detach()
            handles.append(model.hook_point(name).register_forward_hook(save))
        logits = model(batch)
    finally:
        for h in handles:
            h.remove()
    return logits, cache


__all__ = ["HookPoint", "RunLayerNorm", "RunLinear", "forward_with_cache", "rope", "rope_tables"]
