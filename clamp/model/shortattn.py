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
in the same order: compiled C loops (:mod:`clamp.model.native`, used on CPU float32
when a C compiler is available) and torch code (everywhere else).  Both give
the same numbers (tested); the C loops are 5-7x faster.

Shapes (T positions, dh head dim, N = R * B * H, n = (r * B + b) * H + h)::

    heads layout  [R, B, T, H, dh]   the hook-point layout (any strides)
    q, k          [dh, T, N]         after RoPE (``_to_heads`` with ``layout="dt"``)
    v, z          [T, dh, N]         (``layout="td"``)
    scores        [Tq, Tk, N]        scaled and causally masked (-inf above the diagonal)
    pattern       [Tq, Tk, N]        softmax over Tk (dim 1)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

import clamp.model.native as native

Layout = Literal["dt", "td"]


def _lib(x: Tensor):
    """The compiled kernels if they apply to tensors like ``x`` (CPU float32), else None."""
    if x.device.type == "cpu" and x.dtype == torch.float32:
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
    head dimension and ``x2 * cos + x1 * sin`` for the second (:func:`clamp.model.transformer.rope`'s
    convention).  :func:`inverse` gives the inverse rotation.
    """
    return torch.cat([cos, cos], dim=1).contiguous(), torch.cat([-sin, sin], dim=1).contiguous()


def inverse(rot: Rotation | None) -> Rotation | None:
    """The rotation by the opposite angles (the transpose, so the gradient of ``rot``)."""
    return None if rot is None else (rot[0], (-rot[1]).contiguous())


def _rotate_dt(x: Tensor, rot: Rotation) -> Tensor:
    """Apply ``rot`` to ``x`` ``[dh, T, N]`` (the same float operations as the C kernels)."""
    cr, sr = rot[0].T[:, :, None], rot[1].T[:, :, None]  # (dh, T, 1)
    return x * cr + x.roll(-(x.shape[0] // 2), dims=0) * sr


def _to_heads_torch(x: Tensor, layout: Layout, rot: Rotation | None) -> Tensor:
    R, B, T, H, dh = x.shape
    if layout == "dt":
        out = x.permute(4, 2, 0, 1, 3).reshape(dh, T, R * B * H)
        return out if rot is None else _rotate_dt(out, rot)
    return x.permute(2, 4, 0, 1, 3).reshape(T, dh, R * B * H)


def _from_heads_torch(x: Tensor, shape: tuple[int, ...], layout: Layout, rot: Rotation | None) -> Tensor:
    R, B, T, H, dh = shape
    if layout == "dt":
        if rot is not None:
            x = _rotate_dt(x, rot)
        return x.reshape(dh, T, R, B, H).permute(2, 3, 1, 4, 0)
    return x.reshape(T, dh, R, B, H).permute(2, 3, 0, 4, 1)


# --------------------------------------------------------------------------- kernels (no autograd)


def _strides(layout: Layout, dh: int, T: int, N: int) -> tuple[int, int]:
    """(d stride, t stride) of a heads-last tensor."""
    return (T * N, N) if layout == "dt" else (N, dh * N)


def _rot_args(rot: Rotation | None) -> tuple[Tensor | None, Tensor | None]:
    return (None, None) if rot is None else (rot[0].contiguous(), rot[1].contiguous())


def _to_heads(x: Tensor, layout: Layout, rot: Rotation | None) -> Tensor:
    """``x`` ``[R, B, T, H, dh]`` (any strides) to heads-last, rotated by ``rot`` ("dt" only)."""
    if rot is not None and layout != "dt":
        raise ValueError("RoPE is applied in the 'dt' layout only")
    lib = _lib(x)
    if lib is None:
        return _to_heads_torch(x, layout, rot)
    R, B, T, H, dh = x.shape
    N = R * B * H
    out = torch.empty((dh, T, N) if layout == "dt" else (T, dh, N), dtype=x.dtype, device=x.device)
    od, ot = _strides(layout, dh, T, N)
    cr, sr = _rot_args(rot)  # kept alive here
    lib.to_heads(_p(x), *x.stride(), R, B, T, H, dh, _p(out), od, ot, _p_or_null(cr), _p_or_null(sr))
    return out


def _from_heads_into(x: Tensor, layout: Layout, rot: Rotation | None, out: Tensor) -> Tensor:
    """Write heads-last ``x`` (rotated by ``rot``) into ``out`` ``[R, B, T, H, dh]`` (any strides)."""
    lib = _lib(x)
    if lib is None:
        out.copy_(_from_heads_torch(x, tuple(out.shape), layout, rot))
        return out
    x = x.contiguous()
    R, B, T, H, dh = out.shape
    xd, xt = _strides(layout, dh, T, R * B * H)
    cr, sr = _rot_args(rot)
    lib.from_heads(_p(x), xd, xt, R, B, T, H, dh, _p(out), *out.stride(), _p_or_null(cr), _p_or_null(sr))
    return out


def _from_heads(x: Tensor, shape: tuple[int, ...], layout: Layout, rot: Rotation | None) -> Tensor:
    """Heads-last ``x`` to a new contiguous ``[R, B, T, H, dh]``."""
    if _lib(x) is None:
        return _from_heads_torch(x, shape, layout, rot).contiguous()
    return _from_heads_into(x, layout, rot, torch.empty(shape, dtype=x.dtype, device=x.device))


def _contract_c(x: Tensor, xs: tuple[int, int], y: Tensor, ys: tuple[int, int], nb: int, na: int, nc: int,
                scale: float = 1.0, mask: Tensor | None = None) -> Tensor:
    """The C :func:`contract` over contiguous ``x``, ``y`` read through the given (b, a) / (b, c) strides."""
    N = x.shape[-1]
    out = torch.empty((na, nc, N), dtype=x.dtype, device=x.device)
    native.lib().contract(_p(x), xs[0], xs[1], _p(y), ys[0], ys[1], nb, na, nc, N, _p(out), scale, _p_or_null(mask))
    return out


def _scores_fwd(q: Tensor, k: Tensor, scale: float, mask: Tensor) -> Tensor:
    dh, T, N = q.shape
    if _lib(q) is not None:
        return _contract_c(q, (T * N, N), k, (T * N, N), dh, T, T, scale, mask.reshape(T, T).contiguous())
    return contract(q, k).mul_(scale).add_(mask)


def _scores_bwd(q: Tensor, k: Tensor, g: Tensor, scale: float, need: tuple[bool, bool]):
    dh, T, N = q.shape
    g = g.contiguous() * scale
    fast = _lib(q) is not None
    gq = gk = None
    if need[0]:  # gq[d, i] = sum_j k[d, j] g[i, j]
        gq = _contract_c(k, (N, T * N), g, (N, T * N), T, dh, T) if fast else contract(_t(k), _t(g))
    if need[1]:  # gk[d, j] = sum_i q[d, i] g[i, j]
        gk = _contract_c(q, (N, T * N), g, (T * N, N), T, dh, T) if fast else contract(_t(q), g)
    return gq, gk


def _mix_fwd(p: Tensor, v: Tensor) -> Tensor:
    T, dh, N = v.shape
    if _lib(p) is not None:
        return _contract_c(p, (N, T * N), v, (dh * N, N), T, T, dh)
    return contract(_t(p), v)


def _mix_bwd(p: Tensor, v: Tensor, g: Tensor, need: tuple[bool, bool]):
    T, dh, N = v.shape
    g = g.contiguous()
    fast = _lib(p) is not None
    gp = gv = None
    if need[0]:  # gp[i, j] = sum_d g[i, d] v[j, d]
        gp = _contract_c(g, (N, dh * N), v, (N, dh * N), dh, T, T) if fast else contract(_t(g), _t(v))
    if need[1]:  # gv[j, d] = sum_i p[i, j] g[i, d]
        gv = _contract_c(p, (T * N, N), g, (dh * N, N), T, T, dh) if fast else contract(p, g)
    return gp, gv


# --------------------------------------------------------------------------- autograd functions


class QKVScores(torch.autograd.Function):
    """From the fused q/k/v projection ``[R, B, T, 3, H, dh]`` to ``(scores [Tq, Tk, N], v [Tk, dh, N])``.

    Heads-last copies (``_to_heads``; q and k rotated, v not) followed by the scaled,
    masked scores (``_scores_fwd``), in one autograd node whose gradient is written straight into
    the projection's layout.  ``q``, ``k`` or ``v`` (``[R, B, T, H, dh]``, any
    strides) replace the projection's slices where given (a hook point's output
    that an intervention replaced); their slices of the projection's gradient are zero.
    """

    @staticmethod
    def forward(ctx, qkv: Tensor, q: Tensor | None, k: Tensor | None, v: Tensor | None,
                rot: Rotation | None, scale: float, mask: Tensor):
        src = [qkv[:, :, :, i] if x is None else x for i, x in enumerate((q, k, v))]
        qT = _to_heads(src[0], "dt", rot)
        kT = _to_heads(src[1], "dt", rot)
        vT = _to_heads(src[2], "td", None)
        ctx.save_for_backward(qT, kT)
        ctx.scale, ctx.rot, ctx.shape = scale, rot, tuple(qkv.shape)
        ctx.replaced = tuple(x is not None for x in (q, k, v))
        return _scores_fwd(qT, kT, scale, mask), vT

    @staticmethod
    def backward(ctx, gs: Tensor | None, gv: Tensor | None):
        qT, kT = ctx.saved_tensors
        if all(ctx.replaced):
            g = None  # nothing comes from the projection itself
        elif any(ctx.replaced):
            g = torch.zeros(ctx.shape, dtype=qT.dtype, device=qT.device)
        else:
            g = torch.empty(ctx.shape, dtype=qT.dtype, device=qT.device)
        reps: list[Tensor | None] = [None, None, None]
        shape = ctx.shape[:3] + ctx.shape[4:]

        def put(i: int, x: Tensor | None, layout: Layout, rot: Rotation | None) -> None:
            if x is None:
                if not ctx.replaced[i]:
                    g[:, :, :, i].zero_()
                return
            if ctx.replaced[i]:
                reps[i] = _from_heads(x, shape, layout, rot)
            else:
                _from_heads_into(x, layout, rot, g[:, :, :, i])

        gq = gk = None
        if gs is not None:
            gq, gk = _scores_bwd(qT, kT, gs, ctx.scale, (True, True))
        inv = inverse(ctx.rot)
        put(0, gq, "dt", inv)
        put(1, gk, "dt", inv)
        put(2, gv, "td", None)
        return g, reps[0], reps[1], reps[2], None, None, None


class MixHeads(torch.autograd.Function):
    """``z[i, d, n] = sum_j pattern[i, j, n] v[j, d, n]``, returned as a contiguous ``[R, B, T, H, dh]``."""

    @staticmethod
    def forward(ctx, pattern: Tensor, v: Tensor, shape: tuple[int, ...]) -> Tensor:
        pattern, v = pattern.contiguous(), v.contiguous()
        ctx.save_for_backward(pattern, v)
        return _from_heads(_mix_fwd(pattern, v), shape, "td", None)

    @staticmethod
    def backward(ctx, g: Tensor):
        pattern, v = ctx.saved_tensors
        gp, gv = _mix_bwd(pattern, v, _to_heads(g, "td", None), ctx.needs_input_grad[:2])
        return gp, gv, None


class Softmax(torch.autograd.Function):
    """Softmax over the key axis (dim 1) of ``[Tq, Tk, N]`` with the compiled kernel (CPU float32)."""

    @staticmethod
    def forward(ctx, s: Tensor) -> Tensor:
        s = s.contiguous()
        T, N = s.shape[0], s.shape[2]
        p = torch.empty_like(s)
        native.lib().softmax_fwd(_p(s), _p(p), T, N)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, g: Tensor):
        (p,) = ctx.saved_tensors
        g = g.contiguous()
        gs = torch.empty_like(p)
        native.lib().softmax_bwd(_p(p), _p(g), _p(gs), p.shape[0], p.shape[2])
        return gs


def _check(status: int, what: str, nbytes: int) -> None:
    """Turn a fused kernel's status into an error: on failure it wrote nothing, so its output must not be used."""
    if status != 0:
        raise MemoryError(
            f"clamp: the compiled fused attention ({what}) could not allocate {nbytes / 2**20:.1f} MiB of scratch "
            "memory; train fewer packed runs or smaller batches at once (--no-pack, --jobs 1), or set CLAMP_NATIVE=0 "
            "to use the torch path."
        )


class FusedAttention(torch.autograd.Function):
    """The whole of :func:`qkv_scores`, :func:`softmax` and :func:`mix_heads` in one compiled call each way.

    For a layer whose hook points inside the attention nobody watches: it computes
    the same float operations in the same order as the step-by-step path (so the
    same numbers), a block of sequences at a time, and keeps only the pattern for
    the backward pass (q, k and v are gathered again from the projection).
    Returns ``(z [R, B, T, H, dh], pattern [Tq, Tk, N])``; the pattern is not
    differentiable (nothing downstream may use it: that is what "not watched" means).
    """

    @staticmethod
    def forward(ctx, qkv: Tensor, rot: Rotation | None, scale: float, mask: Tensor):
        R, B, T, _, H, dh = qkv.shape
        N = R * B * H
        cr, sr = _rot_args(rot)
        m = mask.reshape(T, T).contiguous()
        st = torch.tensor(qkv.stride(), dtype=torch.int64)
        p = torch.empty((T, T, N), dtype=qkv.dtype)
        z = torch.empty((R, B, T, H, dh), dtype=qkv.dtype)
        _check(native.lib().attn_fwd(_p(qkv), _p(st), R, B, T, H, dh, _p_or_null(cr), _p_or_null(sr), scale, _p(m),
                                     _p(p), _p(z)), "forward", 4 * N * (4 * dh * T + T * T))
        ctx.save_for_backward(qkv, p)
        ctx.rot, ctx.scale = rot, scale
        ctx.mark_non_differentiable(p)
        return z, p

    @staticmethod
    def backward(ctx, gz: Tensor, _gp: Tensor | None):
        qkv, p = ctx.saved_tensors
        R, B, T, _, H, dh = qkv.shape
        cr, sr = _rot_args(ctx.rot)
        st = torch.tensor(qkv.stride(), dtype=torch.int64)
        gst = torch.tensor(gz.stride(), dtype=torch.int64)
        g = torch.empty(qkv.shape, dtype=qkv.dtype)
        N = R * B * H
        _check(native.lib().attn_bwd(_p(qkv), _p(st), R, B, T, H, dh, _p_or_null(cr), _p_or_null(sr), ctx.scale, _p(p),
                                     _p(gz), _p(gst), _p(g)), "backward", 4 * (N * (7 * dh * T + 2 * T * T) + T * dh))
        return g, None, None, None


# --------------------------------------------------------------------------- public


def softmax(s: Tensor) -> Tensor:
    """Softmax over the key axis (dim 1) of scores ``[Tq, Tk, N]``: compiled on CPU float32, else torch's.

    The compiled kernel agrees with ``torch.softmax`` to float rounding (its exp is
    its own) and is the one the fused path uses, so both paths agree exactly.

    Example:
        >>> s = torch.randn(3, 3, 4)
        >>> torch.allclose(softmax(s), torch.softmax(s, dim=1), atol=1e-6)
        True
    """
    if _lib(s) is not None:
        return Softmax.apply(s)
    return torch.softmax(s, dim=1)


def fused_available(qkv: Tensor) -> bool:
    """Whether :func:`fused_attention` can run on ``qkv`` (the compiled kernels, CPU float32)."""
    return _lib(qkv) is not None


def fused_attention(qkv: Tensor, rot: Rotation | None, scale: float, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(z, pattern)`` from the projection, in one compiled call (see :class:`FusedAttention`).

    Example:
        >>> # z, p = fused_attention(qkv, rot, scale, mask)  # where fused_available(qkv)
    """
    return FusedAttention.apply(qkv, rot, scale, mask)



def qkv_scores(qkv: Tensor, rot: Rotation | None, scale: float, mask: Tensor,
               replaced: tuple[Tensor | None, Tensor | None, Tensor | None] = (None, None, None)) -> tuple[Tensor, Tensor]:
    """``(scores, v)`` from the fused projection ``[R, B, T, 3, H, dh]``: scaled, masked scores
    ``[Tq, Tk, N]`` of q and k rotated by ``rot`` (heads-last, ``N = R*B*H``) and v heads-last ``[T, dh, N]``,
    with ``replaced`` q, k, v (``[R, B, T, H, dh]`` or None) used in place of the projection's slices.

    Example:
        >>> qkv = torch.randn(1, 2, 3, 3, 2, 4)
        >>> s, v = qkv_scores(qkv, None, 0.5, torch.zeros(3, 3, 1))
        >>> q, k = (qkv[:, :, :, i].permute(2, 4, 0, 1, 3).reshape(3, 4, -1) for i in (0, 1))  # [T, dh, N]
        >>> torch.allclose(s, torch.einsum("idn,jdn->ijn", q, k) * 0.5, atol=1e-6)
        True
    """
    return QKVScores.apply(qkv, *replaced, rot, scale, mask)


def mix_heads(pattern: Tensor, v: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Attention output ``z`` ``[R, B, T, H, dh]`` (``shape``) from ``pattern`` ``[Tq, Tk, N]`` and ``v`` ``[Tk, dh, N]``.

    Example:
        >>> p, v = torch.rand(3, 3, 2), torch.randn(3, 4, 2)
        >>> z = mix_heads(p, v, (1, 1, 3, 2, 4))
        >>> torch.allclose(z[0, 0], torch.einsum("ijn,jdn->idn", p, v).permute(0, 2, 1), atol=1e-6)
        True
    """
    return MixHeads.apply(pattern, v, tuple(shape))
