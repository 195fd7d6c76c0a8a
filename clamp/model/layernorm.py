"""LayerNorm with a gain and bias per run, through a compiled kernel where there is one.

Why this file exists: ``torch.nn.functional.layer_norm`` spends most of its
time on per-row overhead for 64-wide rows, and the per-run affine adds two
more passes and two reductions in the backward.  :func:`run_layer_norm`
computes the same function in one pass each way with the C kernels of
:mod:`clamp.model.native` (CPU float32), and falls back to torch elsewhere.  The two
agree to float rounding (the reduction orders differ), not bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import clamp.model.native as native

EPS = 1e-5  # torch.nn.functional.layer_norm's default


def _torch(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    R = x.shape[0]
    if R == 1:
        return F.layer_norm(x, x.shape[-1:], w[0], b[0], EPS)
    view = (R,) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return F.layer_norm(x, x.shape[-1:], eps=EPS) * w.view(view) + b.view(view)


class _RunLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        x, w, b = x.contiguous(), w.contiguous(), b.contiguous()
        R, D = x.shape[0], x.shape[-1]
        M = x.numel() // (R * D)
        y = torch.empty_like(x)
        mean = torch.empty(R, M, dtype=x.dtype)
        rstd = torch.empty(R, M, dtype=x.dtype)
        native.lib().ln_fwd(x.data_ptr(), w.data_ptr(), b.data_ptr(), R, M, D, EPS, y.data_ptr(),
                            mean.data_ptr(), rstd.data_ptr())
        ctx.save_for_backward(x, w, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w, mean, rstd = ctx.saved_tensors
        g = g.contiguous()
        R, D = x.shape[0], x.shape[-1]
        M = x.numel() // (R * D)
        gx, gw, gb = torch.empty_like(x), torch.empty_like(w), torch.empty_like(w)
        native.lib().ln_bwd(g.data_ptr(), x.data_ptr(), mean.data_ptr(), rstd.data_ptr(), w.data_ptr(), R, M, D,
                            gx.data_ptr(), gw.data_ptr(), gb.data_ptr())
        return gx, gw, gb


def run_layer_norm(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """LayerNorm of ``x`` ``[R, ..., D]`` over its last axis, then ``* w[r] + b[r]`` (``w``, ``b`` ``[R, D]``).

    Example:
        >>> x, w, b = torch.randn(2, 3, 8), torch.rand(2, 8), torch.randn(2, 8)
        >>> ref = F.layer_norm(x, (8,)) * w[:, None] + b[:, None]
        >>> torch.allclose(run_layer_norm(x, w, b), ref, atol=1e-5)
        True
    """
    if x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[-1] <= 1024 and native.lib() is not None:
        return _RunLayerNorm.apply(x, w, b)
    return _torch(x, w, b)
