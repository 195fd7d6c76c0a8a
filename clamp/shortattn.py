"""Attention arithmetic for short contexts, in a "heads-last" layout, with hand-written gradients.

Why this file exists: the flagship task has 5-token sequences, so attention is
thousands of 5 x 8 by 8 x 5 matrix products per step.  Batched matmuls spend
their time on per-matrix overhead there, and autograd's gradient of a
broadcast-multiply-and-sum materialises large expanded tensors and reduces them
over awkward strides.  Here every tensor is laid out with the ``N = R * B * H``
(runs x sequences x heads) axis last and contiguous, every product is a
contraction over one of the two leading axes (:func:`contract`), and the
backward passes are written out as the same contractions.

Each operation has two implementations that compute the same float operations
in the same order: compiled C loops (:mod:`clamp.native`, used on CPU float32
when a C compiler is available) and torch code (everywhere else).  Both give
the same numbers (tested); the C loops are 5-7x faster.

Shapes (T positions, dh head dim, N = R * B * H, n = (r * B + b) * H + h)::

    heads layout  [R, B, T, H, dh]   the hook-point layout (any strides)
    q, k          [dh, T, N]         after RoPE (:func:`to_heads` with ``layout="dt"``)
    v, z          [T, dh, N]         (``layout="td"``)
    scores        [Tq, Tk, N]        scaled and causally masked (-inf above the diagonal)
    pattern       [Tq, Tk, N]        softmax over Tk (dim 1)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from clamp import native

Layout = Literal["dt", "td"]


def _lib(*tensors: Tensor):
    """The compiled kernels if they apply to these tensors (CPU float32), else None."""
    if all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return native.lib()
    return None


def _p(t: Tensor) -> int:
    """The data pointer of ``t``; the caller keeps ``t`` alive for as long as the pointer is used."""
    return t.data_ptr()


def _p_or_null(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


# --------------------------------------------------------------------------- torch reference code


def contract(x: Tensor, y: Tensor) -> Tensor:
    """``out[a, c, n] = sum_b x[b, a, n] * y[b, c, n]`` for ``x`` ``[b, a, N]``, ``y`` ``[b, c, N]``.

    On the CPU the sum runs from ``b = 0`` up, one product at a time, exactly as the
    compiled kernel does (``Tensor.sum`` reorders the additions for some shapes); on
    other devices it is one broadcast multiply and a sum.

    Example:
        >>> x, y = torch.randn(3, 2, 4), torch.randn(3, 5, 4)
        >>> torch.allclose(contract(x, y), torch.einsum("ban,bcn->acn", x, y), atol=1e-6)
        True
    """
    if x.device.type != "cpu":
        return (x[:, :, None] * y[:, None]).sum(0)
    out = x[0][:, None] * y[0][None]
    for b in range(1, x.shape[0]):
        out.add_(x[b][:, None] * y[b][None])
    return out


def _t(x: Tensor) -> Tensor:
    """Swap the two leading axes (a view)."""
    return x.transpose(0, 1)


Rotation = tuple[Tensor, Tensor]  # (cr, sr), each [T, dh]: see rope_rotation


def rope_rotation(cos: Tensor, sin: Tensor) -> Rotation:
    """RoPE as per-position coefficients ``(cr, sr)`` ``[T, dh]`` from angle tables ``[T, dh/2]``.

    A rotated value is ``x[d] * cr[t, d] + x[p(d)] * sr[t, d]`` with partner
    ``p(d) = (d + dh/2) % dh``: ``x1 * cos - x2 * sin`` for the first half of the
    head dimension and ``x2 * cos + x1 * sin`` for the second (:func:`clamp.model.rope`'s
    convention).  :func:`inverse` gives the inverse rotation.
    """
    return torch.cat([cos, cos], dim=1).contiguous(), torch.cat([-sin, sin], dim=1).contiguous()


def inverse(rot: Rotation | None) -> Rotation | None:
    """The rotation by the opposite angles (the transpose, so the gradient of ``rot``)."""
    return None if rot is None else (rot[0], -rot[1])


def _rotate_dt(x: Tensor, rot: Rotation) -> Tensor:
    """Apply ``rot`` to ``x`` ``[dh, T, N]`` (the same float operations as the C kernels)."""
    cr, sr = rot[0].T[:, :, None], rot[1].T[:, :, None]  # (dh, T, 1)
    return x * cr + x.roll(-(x.shape[0] // 2), dims=0) * sr


def _to_heads_torch(x: Tensor, layout: Layout, rot: Rotation | None) -> Tensor:
    R, B, T, H, dh = x.shape
    if layout == "dt":
        out = x.permute(4, 2, 0, 1, 3).reshape(dh, T, R * B * H)
        return out if rot is None else _rotate_dt(out, rot)
    if rot is not None:
        raise ValueError("RoPE is applied in the 'dt' layout only")
    return x.permute(2, 4, 0, 1, 3).reshape(T, dh, R * B * H)


def _from_heads_torch(x: Tensor, shape: tuple[int, ...], layout: Layout, rot: Rotation | None) -> Tensor:
    R, B, T, H, dh = shape
    if layout == "dt":
        if rot is not None:
            x = _rotate_dt(x, rot)
        return x.reshape(dh, T, R, B, H).permute(2, 3, 1, 4, 0).contiguous()
    return x.reshape(T, dh, R, B, H).permute(2, 3, 0, 4, 1).contiguous()


# --------------------------------------------------------------------------- layout changes


def _strides(layout: Layout, dh: int, T: int, N: int) -> tuple[int, int]:
    """(d stride, t stride) of a heads-last tensor."""
    return (T * N, N) if layout == "dt" else (N, dh * N)


def _to_heads(x: Tensor, layout: Layout, rot: Rotation | None) -> Tensor:
    lib = _lib(x) if rot is None else _lib(x, *rot)
    if lib is None or (rot is not None and layout != "dt"):
        return _to_heads_torch(x, layout, rot)
    R, B, T, H, dh = x.shape
    N = R * B * H
    out = torch.empty((dh, T, N) if layout == "dt" else (T, dh, N), dtype=x.dtype, device=x.device)
    od, ot = _strides(layout, dh, T, N)
    strides = torch.tensor(x.stride(), dtype=torch.int64)
    cr, sr = (None, None) if rot is None else (rot[0].contiguous(), rot[1].contiguous())  # kept alive here
    lib.to_heads(_p(x), _p(strides), R, B, T, H, dh, _p(out), od, ot, _p_or_null(cr), _p_or_null(sr))
    return out


def _from_heads(x: Tensor, shape: tuple[int, ...], layout: Layout, rot: Rotation | None) -> Tensor:
    lib = _lib(x) if rot is None else _lib(x, *rot)
    if lib is None or (rot is not None and layout != "dt"):
        return _from_heads_torch(x, shape, layout, rot)
    x = x.contiguous()
    R, B, T, H, dh = shape
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    xd, xt = _strides(layout, dh, T, R * B * H)
    cr, sr = (None, None) if rot is None else (rot[0].contiguous(), rot[1].contiguous())  # kept alive here
    lib.from_heads(_p(x), xd, xt, R, B, T, H, dh, _p(out), _p_or_null(cr), _p_or_null(sr))
    return out


class ToHeads(torch.autograd.Function):
    """``[R, B, T, H, dh]`` (any strides) to the heads-last layout, optionally rotated (RoPE)."""

    @staticmethod
    def forward(ctx, x: Tensor, layout: Layout, rot: Rotation | None) -> Tensor:  # noqa: D102
        ctx.shape, ctx.layout, ctx.rot = tuple(x.shape), layout, rot
        return _to_heads(x, layout, rot)

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102
        return _from_heads(g, ctx.shape, ctx.layout, inverse(ctx.rot)), None, None


class FromHeads(torch.autograd.Function):
    """The heads-last layout back to a contiguous ``[R, B, T, H, dh]``."""

    @staticmethod
    def forward(ctx, x: Tensor, shape: tuple[int, ...], layout: Layout) -> Tensor:  # noqa: D102
        ctx.layout = layout
        return _from_heads(x, shape, layout, None)

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102
        return _to_heads(g, ctx.layout, None), None, None


def to_heads(x: Tensor, layout: Layout = "dt", rot: Rotation | None = None) -> Tensor:
    """Heads-last copy of ``x`` ``[R, B, T, H, dh]``: ``[dh, T, N]`` (``"dt"``) or ``[T, dh, N]`` (``"td"``).

    With ``rot`` (:func:`rope_rotation`, ``"dt"`` only) the result is rotated by RoPE.

    Example:
        >>> x = torch.randn(2, 3, 5, 4, 8)
        >>> to_heads(x, "td").shape
        torch.Size([5, 8, 24])
    """
    return ToHeads.apply(x, layout, rot)


def from_heads(x: Tensor, shape: tuple[int, ...], layout: Layout = "td") -> Tensor:
    """The inverse of :func:`to_heads` without rotation: a contiguous tensor of ``shape`` ``(R, B, T, H, dh)``.

    Example:
        >>> x = torch.randn(2, 3, 5, 4, 8)
        >>> torch.equal(from_heads(to_heads(x, "td"), tuple(x.shape)), x)
        True
    """
    return FromHeads.apply(x, tuple(shape), layout)


# --------------------------------------------------------------------------- products


def _contract_strided(x: Tensor, xs: tuple[int, int], y: Tensor, ys: tuple[int, int], nb: int, na: int, nc: int,
                      scale: float = 1.0, mask: Tensor | None = None) -> Tensor:
    """The C :func:`contract` over contiguous ``x``, ``y`` read through the given (b, a) / (b, c) strides."""
    N = x.shape[-1]
    out = torch.empty((na, nc, N), dtype=x.dtype, device=x.device)
    native.lib().contract(_p(x), xs[0], xs[1], _p(y), ys[0], ys[1], nb, na, nc, N, _p(out), scale, _p_or_null(mask))
    return out


class Scores(torch.autograd.Function):
    """``scores[i, j, n] = (sum_d q[d, i, n] k[d, j, n]) * scale + mask[i, j]``."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, scale: float, mask: Tensor) -> Tensor:  # noqa: D102
        q, k = q.contiguous(), k.contiguous()
        ctx.save_for_backward(q, k)
        ctx.scale = scale
        dh, T, N = q.shape
        if _lib(q, k, mask) is not None:
            return _contract_strided(q, (T * N, N), k, (T * N, N), dh, T, T, scale, mask.reshape(T, T).contiguous())
        return contract(q, k).mul_(scale).add_(mask)

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102  g: [Tq, Tk, N]
        q, k = ctx.saved_tensors
        dh, T, N = q.shape
        g = g.contiguous() * ctx.scale
        fast = _lib(q, k, g) is not None
        gq = gk = None
        if ctx.needs_input_grad[0]:  # gq[d, i] = sum_j k[d, j] g[i, j]
            gq = (_contract_strided(k, (N, T * N), g, (N, T * N), T, dh, T) if fast
                  else contract(_t(k), _t(g)))
        if ctx.needs_input_grad[1]:  # gk[d, j] = sum_i q[d, i] g[i, j]
            gk = (_contract_strided(q, (N, T * N), g, (T * N, N), T, dh, T) if fast
                  else contract(_t(q), g))
        return gq, gk, None, None


class Mix(torch.autograd.Function):
    """``z[i, d, n] = sum_j pattern[i, j, n] v[j, d, n]``."""

    @staticmethod
    def forward(ctx, pattern: Tensor, v: Tensor) -> Tensor:  # noqa: D102
        pattern, v = pattern.contiguous(), v.contiguous()
        ctx.save_for_backward(pattern, v)
        T, dh, N = v.shape
        if _lib(pattern, v) is not None:
            return _contract_strided(pattern, (N, T * N), v, (dh * N, N), T, T, dh)
        return contract(_t(pattern), v)

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102  g: [Tq, dh, N]
        pattern, v = ctx.saved_tensors
        T, dh, N = v.shape
        g = g.contiguous()
        fast = _lib(pattern, v, g) is not None
        gp = gv = None
        if ctx.needs_input_grad[0]:  # gp[i, j] = sum_d g[i, d] v[j, d]
            gp = (_contract_strided(g, (N, dh * N), v, (N, dh * N), dh, T, T) if fast
                  else contract(_t(g), _t(v)))
        if ctx.needs_input_grad[1]:  # gv[j, d] = sum_i p[i, j] g[i, d]
            gv = (_contract_strided(pattern, (T * N, N), g, (dh * N, N), T, T, dh) if fast
                  else contract(pattern, g))
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
