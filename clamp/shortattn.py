"""Attention arithmetic for short contexts, in a "heads-last" layout, with hand-written gradients.

Why this file exists: the flagship task has 5-token sequences, so attention is
thousands of 5 x 8 by 8 x 5 matrix products per step.  Batched matmuls spend
their time on per-matrix overhead there, and autograd's gradient of a
broadcast-multiply-and-sum materialises large expanded tensors and reduces them
over awkward strides.  Here every tensor is laid out ``[a, b, N]`` with the
``N = R * B * H`` (runs x sequences x heads) axis last and contiguous, and each
product is one broadcast multiply followed by a sum over the *leading* axis
(:func:`contract`), the arrangement PyTorch's CPU kernels vectorise best.  The
backward passes are written out as the same contraction, with every operand
made contiguous first (a broadcast multiply over a transposed view is several
times slower).

Shapes (T positions, dh head dim, N = R * B * H)::

    q, k     [dh, T, N]   after RoPE (see :func:`rope_heads_last`)
    scores   [Tq, Tk, N]  scaled and causally masked (-inf above the diagonal)
    pattern  [Tq, Tk, N]  softmax over Tk (dim 1)
    v        [Tk, dh, N]
    z        [Tq, dh, N]

The results are those of ``q @ k.T`` and ``pattern @ v`` up to float rounding
(tests check both values and gradients against the batched-matmul path).
"""

from __future__ import annotations

import torch
from torch import Tensor


def contract(x: Tensor, y: Tensor) -> Tensor:
    """``out[a, c, n] = sum_b x[b, a, n] * y[b, c, n]`` for contiguous ``x`` ``[b, a, N]`` and ``y`` ``[b, c, N]``.

    Example:
        >>> x, y = torch.randn(3, 2, 4), torch.randn(3, 5, 4)
        >>> torch.allclose(contract(x, y), torch.einsum("ban,bcn->acn", x, y), atol=1e-6)
        True
    """
    return (x[:, :, None] * y[:, None]).sum(0)


def _t(x: Tensor) -> Tensor:
    """Swap the two leading axes, contiguously."""
    return x.transpose(0, 1).contiguous()


class Scores(torch.autograd.Function):
    """``scores[i, j, n] = scale * sum_d q[d, i, n] k[d, j, n] + mask[i, j]``."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, scale: float, mask: Tensor) -> Tensor:  # noqa: D102
        q, k = q.contiguous(), k.contiguous()
        ctx.save_for_backward(q, k)
        ctx.scale = scale
        return contract(q, k).mul_(scale).add_(mask)

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102  g: [Tq, Tk, N]
        q, k = ctx.saved_tensors
        g = g.contiguous() * ctx.scale
        gq = gk = None
        if ctx.needs_input_grad[0]:
            gq = contract(_t(k), _t(g))  # gq[d, i] = sum_j k[d, j] g[i, j]
        if ctx.needs_input_grad[1]:
            gk = contract(_t(q), g)  # gk[d, j] = sum_i q[d, i] g[i, j]
        return gq, gk, None, None


class Mix(torch.autograd.Function):
    """``z[i, d, n] = sum_j pattern[i, j, n] v[j, d, n]``."""

    @staticmethod
    def forward(ctx, pattern: Tensor, v: Tensor) -> Tensor:  # noqa: D102
        pattern, v = pattern.contiguous(), v.contiguous()
        ctx.save_for_backward(pattern, v)
        return contract(_t(pattern), v)

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102  g: [Tq, dh, N]
        pattern, v = ctx.saved_tensors
        g = g.contiguous()
        gp = gv = None
        if ctx.needs_input_grad[0]:
            gp = contract(_t(g), _t(v))  # gp[i, j] = sum_d g[i, d] v[j, d]
        if ctx.needs_input_grad[1]:
            gv = contract(pattern, g)  # gv[j, d] = sum_i p[i, j] g[i, d]
        return gp, gv


def scores(q: Tensor, k: Tensor, scale: float, mask: Tensor) -> Tensor:
    """Scaled, masked attention scores ``[Tq, Tk, N]`` from ``q``, ``k`` ``[dh, T, N]``; ``mask`` ``[Tq, Tk, 1]``.

    Example:
        >>> q, k = torch.randn(4, 3, 2), torch.randn(4, 3, 2)
        >>> mask = torch.zeros(3, 3, 1)
        >>> ref = torch.einsum("din,djn->ijn", q, k) * 0.5
        >>> torch.allclose(scores(q, k, 0.5, mask), ref, atol=1e-6)
        True
    """
    return Scores.apply(q, k, scale, mask)


def mix(pattern: Tensor, v: Tensor) -> Tensor:
    """Attention output ``[Tq, dh, N]`` from ``pattern`` ``[Tq, Tk, N]`` and ``v`` ``[Tk, dh, N]``.

    Example:
        >>> p, v = torch.rand(3, 3, 2), torch.randn(3, 4, 2)
        >>> torch.allclose(mix(p, v), torch.einsum("ijn,jdn->idn", p, v), atol=1e-6)
        True
    """
    return Mix.apply(pattern, v)


def rope_heads_last(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding of ``x`` ``[dh, T, N]``; ``cos``, ``sin`` ``[dh/2, T, 1]``.

    Rotates the pairs ``(x[d], x[d + dh/2])`` by the angle of each position, the
    same convention as :func:`clamp.model.rope`.
    """
    half = x.shape[0] // 2
    x1, x2 = x[:half], x[half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=0)
