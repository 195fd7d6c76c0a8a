"""What each intervention kind does to a forward pass, in plain torch.

Why this file exists: the specs (:mod:`clamp.interventions.spec`) are data; the
applier (:mod:`clamp.interventions.apply`) owns the nnsight trace.  In between,
each kind is compiled once, for one model, into an :class:`Effect`: a list of
:class:`Op` s, each a function ``(activation, ctx) -> activation`` bound to one
hook point, plus an optional ``prepare`` step that computes values before the
trace (an idealised residual, a donor model's activations) and a list of
activations it needs from a clean pass (the arm's model with every other active
intervention but without the ones needing the clean pass).  Nothing here
imports nnsight, so the same effects can be checked with plain forward hooks.

Edits never modify an activation in place: the activation is cloned, the clone
edited and returned (in-place edits of tensors autograd saved break backward).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from clamp.errors import ConfigError
from clamp.interventions.spec import (
    TARGET_HOOK, Clamp, FunctionClamp, GraftOutput, GraftParams, IdealLayer1, Intervention, Knockout,
    PatternClamp, PerfectCopy, PreservingAblation,
)
from clamp.model.transformer import Transformer, head_axis
from clamp.tasks.batch import Batch

QUERY_AXIS_LEAVES = ("hook_attn_scores", "hook_pattern")


@dataclass
class Ctx:
    """Per-forward context handed to every op."""

    batch: Batch
    train: bool
    clean: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Op:
    """One function applied at one hook point; ``edits=False`` marks a read-only op."""

    site: str
    fn: Callable[[Tensor, Ctx], Tensor]
    edits: bool = True


class Effect:
    """A compiled intervention: ops at hook points, an optional prepare step, clean-pass needs.

    ``batch_dependent`` marks an effect whose edit of one sequence depends on the
    other sequences of the batch (a mean or resample ablation over the batch, a user
    function): evaluation then runs each evaluation set in one forward instead of in
    chunks.
    """

    def __init__(self, ops: list[Op], clean_sites: tuple[str, ...] = (), batch_dependent: bool = False) -> None:
        self.ops = ops
        self.clean_sites = clean_sites
        self.batch_dependent = batch_dependent
        self.state: Any = None

    def prepare(self, ctx: Ctx) -> None:
        """Compute values needed by the ops (called before the trace)."""

    def release(self) -> None:
        """Drop per-forward state so no graph outlives its step."""
        self.state = None


# --------------------------------------------------------------------------- slicing


def position_axis(site: str) -> int:
    """The axis a ``positions`` selection indexes: query rows for patterns/scores, else the sequence axis."""
    return 3 if site.rsplit(".", 1)[-1] in QUERY_AXIS_LEAVES else 2


def _as_index(values: list[int], device: torch.device | str) -> slice | Tensor:
    """A run of consecutive indices as a slice (a view, no copy), anything else as an index tensor."""
    if values == list(range(values[0], values[0] + len(values))):
        return slice(values[0], values[0] + len(values))
    return torch.tensor(values, device=device)


def slice_index(site: str, ndim: int, heads: tuple[int, ...] | None, positions: tuple[int, ...] | None,
                device: torch.device | str = "cpu") -> tuple:
    """Index selecting ``heads`` and ``positions`` of an activation ``[R, B, ...]`` of hook ``site``.

    The two axes are adjacent in every hook, so the selected slice keeps the
    activation's axis order: e.g. ``[R, B, n_heads_sel, n_pos_sel, Tk]`` for a pattern.
    Consecutive selections become slices, so the slice is a view of the activation.

    Example:
        >>> x = torch.zeros(1, 2, 3, 5, 5)
        >>> x[slice_index("blocks.0.attn.hook_pattern", 5, (0, 2), (4,))].shape
        torch.Size([1, 2, 2, 1, 5])
    """
    sel = []
    if heads is not None:
        sel.append((head_axis(site), list(heads)))
    if positions is not None:
        sel.append((position_axis(site), list(positions)))
    sel.sort()
    idx: list[Any] = [slice(None)] * ndim
    parts = [(axis, _as_index(values, device)) for axis, values in sel]
    tensors = [i for i, (_, part) in enumerate(parts) if isinstance(part, Tensor)]
    if len(tensors) == 2:  # two index lists: broadcast them against each other
        parts[0] = (parts[0][0], parts[0][1][:, None])
        parts[1] = (parts[1][0], parts[1][1][None, :])
    for axis, part in parts:
        idx[axis] = part
    return tuple(idx)


def replace_slice(x: Tensor, idx: tuple, new: Callable[[Tensor], Tensor]) -> Tensor:
    """A copy of ``x`` whose slice ``x[idx]`` is ``new(x[idx])`` (broadcast to the slice)."""
    cur = x[idx]
    y = x.clone()
    y[idx] = new(cur).expand_as(cur).to(x.dtype)
    return y


# --------------------------------------------------------------------------- pattern builders


def build_pattern(name: str, batch: Batch, T: int, strength: float) -> tuple[Tensor, Tensor]:
    """A named attention pattern ``[R, B, T, T]`` and the rows it defines ``[R, B, T]`` (bool).

    Example:
        >>> from clamp.tasks import FewShotConfig
        >>> b = FewShotConfig(n_classes=10, d_in=4).build().sample(2, torch.Generator().manual_seed(0))
        >>> p, rows = build_pattern("prev_token", b, 5, 1.0)
        >>> p[0, 0, 3].tolist(), bool(rows.all())
        ([0.0, 0.0, 1.0, 0.0, 0.0], True)
    """
    R, B = batch.tokens.shape[:2]
    device = batch.tokens.device
    rows = torch.ones(R, B, T, dtype=torch.bool, device=device)
    if name == "prev_token":
        p = torch.eye(T, device=device) * (1 - strength)
        i = torch.arange(1, T, device=device)
        p[i, i - 1] = strength
        p[0, 0] = 1.0
    elif name == "uniform":
        p = torch.ones(T, T, device=device).tril()
        p = p / p.sum(-1, keepdim=True)
    elif name == "induction":
        label_pos, correct = batch.meta["label_pos"], batch.meta["correct_pos"]  # [R,B,N], [R,B]
        N = label_pos.shape[-1]
        row = torch.zeros(R, B, T, device=device)
        row.scatter_(-1, label_pos, (1 - strength) / max(N - 1, 1))
        row.scatter_(-1, correct[..., None], strength)
        out = torch.zeros(R, B, T, T, device=device)
        out[:, :, T - 1] = row
        rows = torch.zeros_like(rows)
        rows[:, :, T - 1] = True
        return out, rows
    else:
        raise ConfigError(f"unknown pattern {name!r}; choose prev_token, uniform or induction.")
    return p.expand(R, B, T, T), rows


def induction_row(batch: Batch, T: int, strength: float) -> Tensor:
    """The oracle induction pattern's query row ``[R, B, T]``: ``strength`` on the correct label token,
    the rest spread evenly over the other label tokens (the last row of :func:`build_pattern`'s).

    Example:
        >>> from clamp.tasks import FewShotConfig
        >>> b = FewShotConfig(n_classes=10, d_in=4).build().sample(3, torch.Generator().manual_seed(0))
        >>> torch.equal(induction_row(b, 5, 0.9), build_pattern("induction", b, 5, 0.9)[0][:, :, 4])
        True
    """
    label_pos, correct = batch.meta["label_pos"], batch.meta["correct_pos"]  # [R,B,N], [R,B]
    N = label_pos.shape[-1]
    row = torch.zeros(*label_pos.shape[:2], T, device=label_pos.device)
    row.scatter_(-1, label_pos, (1 - strength) / max(N - 1, 1))
    return row.scatter_(-1, correct[..., None], strength)


def load_function(path: str) -> Callable[..., Tensor]:
    """Import ``"package.module:function"``.

    Example:
        >>> load_function("torch:zeros") is torch.zeros
        True
    """
    if not isinstance(path, str) or ":" not in path:
        raise ConfigError(f"function path {path!r} must look like 'package.module:function'.")
    mod_name, fn_name = path.split(":", 1)
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in fn_name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import {path!r} ({e}); check the module is importable and the function exists.") from None
    if not callable(obj):
        raise ConfigError(f"{path!r} is not callable.")
    return obj


# --------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str) -> dict[str, Tensor]:
    """A packed ``Transformer.state_dict()`` from a file (a ``Trainer.state_dict()`` also works)."""
    if not os.path.exists(path):
        raise ConfigError(f"checkpoint {path!r} does not exist; save one with torch.save(model.state_dict(), path).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"checkpoint {path!r} is not a Transformer state_dict.")
    return state


def checkpoint_runs(state: dict[str, Tensor]) -> int:
    return next(iter(state.values())).shape[0]


def donor_model(model: Transformer, path: str, run: int | None) -> Transformer:
    """A frozen copy of ``model``'s architecture holding the checkpoint's weights, one run per model run.

    ``run`` picks the checkpoint run used for every model run; ``None`` maps run
    ``r`` to run ``r`` (a one-run checkpoint serves every run).
    """
    state = load_checkpoint(path)
    R, Rc = model.n_runs, checkpoint_runs(state)
    if run is None:
        if Rc not in (1, R):
            raise ConfigError(f"checkpoint {path!r} has {Rc} runs but the model has {R}; set checkpoint_run to pick one.")
        index = torch.arange(R) if Rc == R else torch.zeros(R, dtype=torch.long)
    else:
        if not 0 <= run < Rc:
            raise ConfigError(f"checkpoint_run={run} is out of range: checkpoint {path!r} has {Rc} runs.")
        index = torch.full((R,), run, dtype=torch.long)
    own = model.state_dict()
    if set(own) != set(state) or any(own[k].shape[1:] != state[k].shape[1:] for k in own):
        raise ConfigError(f"checkpoint {path!r} does not fit this model's architecture; graft from a run with the same ModelConfig.")
    donor = Transformer(model.cfg, model.seeds)
    donor.load_state_dict({k: v[index] for k, v in state.items()})
    donor.requires_grad_(False)
    return donor.to(next(model.parameters()).device)


# --------------------------------------------------------------------------- kinds


def _resolve_heads(model: Transformer, heads: tuple[int, ...] | None, keep: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
    if keep is not None:
        return tuple(h for h in range(model.cfg.n_heads) if h not in keep)
    return heads


def selection_mask(site: str, x: Tensor, heads: tuple[int, ...] | None, positions: tuple[int, ...] | None) -> Tensor:
    """A bool tensor broadcastable to ``x``, True on the slice :func:`slice_index` selects.

    Example:
        >>> m = selection_mask("blocks.0.attn.hook_v", torch.zeros(1, 2, 5, 4, 8), (1, 3), None)
        >>> m.shape, m.flatten().tolist()
        (torch.Size([1, 1, 1, 4, 1]), [False, True, False, True])
    """
    shape = [1] * x.dim()
    for axis in ([head_axis(site)] if heads is not None else []) + ([position_axis(site)] if positions is not None else []):
        shape[axis] = x.shape[axis]
    mask = torch.zeros(shape, dtype=torch.bool, device=x.device)
    mask[slice_index(site, x.dim(), heads, positions, x.device)] = True
    return mask


def _slice_op(site: str, heads: tuple[int, ...] | None, positions: tuple[int, ...] | None,
              new: Callable[[Tensor, Ctx], Tensor], constant: float | None = None) -> Op:
    """An op replacing the selected slice with ``new(slice, ctx)``, or with the scalar ``constant``.

    A constant is written with one ``torch.where`` against a cached mask (no copy of
    the activation, and the gradient is the same: zero on the slice).
    """
    indices: dict[tuple, Any] = {}  # built once per (shape, device)

    def fn(x: Tensor, ctx: Ctx) -> Tensor:
        key = (tuple(x.shape), x.device)
        if constant is not None:
            if key not in indices:
                indices[key] = (selection_mask(site, x, heads, positions),
                                torch.tensor(constant, dtype=x.dtype, device=x.device))
            mask, value = indices[key]
            return torch.where(mask, value, x)
        if key not in indices:
            indices[key] = slice_index(site, x.dim(), heads, positions, x.device)
        return replace_slice(x, indices[key], lambda cur: new(cur, ctx))
    return Op(site, fn)


def _clamp(iv: Clamp, model: Transformer, task: Any) -> Effect:
    value = torch.as_tensor(iv.value, dtype=torch.float32)
    constant = float(value) if value.dim() == 0 else None
    return Effect([_slice_op(iv.site, iv.heads, iv.positions, lambda cur, ctx: value.to(cur.device), constant)])


def _pattern_clamp(iv: PatternClamp, model: Transformer, task: Any) -> Effect:
    masks: dict[tuple, Tensor] = {}  # (shape, device) -> [1, 1, H, T, 1] bool: the clamped heads and rows
    fixed: dict[tuple, Tensor] = {}  # the constant patterns (prev_token, uniform), [T, T]

    def fn(x: Tensor, ctx: Ctx) -> Tensor:  # x: [R, B, H, T, T]
        T = x.shape[-1]
        key = (tuple(x.shape), x.device)
        if key not in masks:
            rows = list(range(T - 1, T)) if iv.pattern == "induction" else list(range(T))  # rows the pattern defines
            if iv.positions is not None:
                rows = [t for t in rows if t in iv.positions]
            mask = torch.zeros(1, 1, x.shape[2], T, 1, dtype=torch.bool, device=x.device)
            if rows:
                h = torch.tensor(list(iv.heads), device=x.device)
                mask[:, :, h[:, None], torch.tensor(rows, device=x.device)[None, :]] = True
            masks[key] = mask
        if iv.pattern == "induction":  # the query row, per sequence, broadcast over heads and rows
            value = induction_row(ctx.batch, T, iv.strength)[:, :, None, None, :]
        else:
            if key not in fixed:
                fixed[key] = build_pattern(iv.pattern, ctx.batch, T, iv.strength)[0][0, 0].to(x.dtype)
            value = fixed[key]
        return torch.where(masks[key], value.to(x.dtype), x)
    return Effect([Op(iv.site, fn)])


class _FunctionEffect(Effect):
    def __init__(self, iv: FunctionClamp) -> None:
        self.fn = load_function(iv.fn)
        self.kwargs = dict(iv.kwargs)
        super().__init__([_slice_op(iv.site, iv.heads, iv.positions, lambda cur, ctx: self.state)],
                         batch_dependent=True)  # the function sees the whole batch

    def prepare(self, ctx: Ctx) -> None:
        self.state = self.fn(ctx.batch, **self.kwargs)


def _function_clamp(iv: FunctionClamp, model: Transformer, task: Any) -> Effect:
    return _FunctionEffect(iv)


class _IdealLayer1Effect(Effect):
    def __init__(self, iv: IdealLayer1, model: Transformer) -> None:
        self.model = model
        self.layer = iv.layer
        pre = f"blocks.{iv.layer}"
        super().__init__([
            Op(f"{pre}.hook_resid_pre", lambda x, ctx: self.state[0]),
            Op(f"{pre}.attn.hook_q", lambda x, ctx: self.state[1]),
            Op(f"{pre}.attn.hook_k", lambda x, ctx: self.state[2]),
        ])

    def prepare(self, ctx: Ctx) -> None:
        e = self.model.embed(ctx.batch)  # [R, B, T, D], raw embeddings (with gradient)
        label_pos = ctx.batch.meta["label_pos"]  # [R, B, N]
        D = e.shape[-1]
        before = e.gather(2, (label_pos - 1)[..., None].expand(*label_pos.shape, D))  # item before each label
        ideal = e.scatter(2, label_pos[..., None].expand(*label_pos.shape, D), before)
        block = self.model.blocks[self.layer]
        h = block.ln1(ideal)
        q = block.attn.split_heads(block.attn.W_Q(h))
        k = block.attn.split_heads(block.attn.W_K(h))
        self.state = (e, q, k)


def _ideal_layer1(iv: IdealLayer1, model: Transformer, task: Any) -> Effect:
    return _IdealLayer1Effect(iv, model)


class _PerfectCopyEffect(Effect):
    def __init__(self, iv: PerfectCopy) -> None:
        self.head = iv.head
        super().__init__([
            Op(f"blocks.{iv.layer}.attn.hook_attn_scores", self._read, edits=False),
            Op("hook_logits", self._write),
        ])

    def _read(self, x: Tensor, ctx: Ctx) -> Tensor:  # x: [R, B, H, T, T]
        label_pos = ctx.batch.meta["label_pos"]
        self.state = x[:, :, self.head, -1, :].gather(-1, label_pos)  # [R, B, N] query->label scores
        return x

    def _write(self, x: Tensor, ctx: Ctx) -> Tensor:  # x: [R, B, T, C]
        row = torch.full(x.shape[:2] + x.shape[3:], float("-inf"), dtype=x.dtype, device=x.device)
        row = row.scatter(-1, ctx.batch.meta["context_labels"], self.state.to(x.dtype))
        y = x.clone()
        y[:, :, -1] = row
        return y


def _perfect_copy(iv: PerfectCopy, model: Transformer, task: Any) -> Effect:
    return _PerfectCopyEffect(iv)


def reference_batch(task: Any, size: int, seed: int, n_runs: int) -> Batch:
    """``size`` training sequences drawn with ``seed``, the same for every run."""
    b = task.sample(size, torch.Generator().manual_seed(seed))
    return Batch.stack([b] * n_runs)


class _KnockoutEffect(Effect):
    def __init__(self, iv: Knockout, model: Transformer, task: Any) -> None:
        self.iv, self.model = iv, model
        self.heads = _resolve_heads(model, iv.heads, iv.keep)
        self.ref_mean: Tensor | None = None
        self.donor: Transformer | None = None
        if iv.method == "mean" and iv.mean_over == "reference":
            device = next(model.parameters()).device
            self.ref = reference_batch(task, iv.reference_size, iv.reference_seed, model.n_runs).to(device)
            if iv.checkpoint is not None:
                self.donor = donor_model(model, iv.checkpoint, iv.checkpoint_run)
        over_batch = iv.method == "resample" or (iv.method == "mean" and iv.mean_over == "batch")
        constant = 0.0 if iv.method == "zero" else None
        super().__init__([_slice_op(iv.site, self.heads, iv.positions, self._new, constant)], batch_dependent=over_batch)

    def _reference_mean(self) -> Tensor:
        if self.ref_mean is not None:
            return self.ref_mean
        source = self.donor if self.donor is not None else self.model
        with torch.no_grad():
            _, cache = source.run_with_cache(self.ref, [self.iv.site])
        mean = cache[self.iv.site].mean(1, keepdim=True)  # [R, 1, ...]
        if self.donor is not None:
            self.ref_mean = mean  # a fixed model: compute once
        return mean

    def prepare(self, ctx: Ctx) -> None:
        if self.iv.method == "mean" and self.iv.mean_over == "reference":
            self.state = self._reference_mean()

    def _new(self, cur: Tensor, ctx: Ctx) -> Tensor:
        method = self.iv.method
        if method == "zero":
            return torch.zeros((), dtype=cur.dtype, device=cur.device)
        if method == "resample":
            if cur.shape[1] < 2:
                raise ValueError(f"{self.iv.name}: resample ablation needs at least 2 sequences per batch.")
            return cur.roll(1, dims=1)
        if self.iv.mean_over == "batch":
            return cur.mean(1, keepdim=True)
        idx = slice_index(self.iv.site, self.state.dim(), self.heads, self.iv.positions, self.state.device)
        return self.state[idx]


def _knockout(iv: Knockout, model: Transformer, task: Any) -> Effect:
    return _KnockoutEffect(iv, model, task)


def _ablate(method: str, cur: Tensor) -> Tensor:
    if method == "zero":
        return torch.zeros((), dtype=cur.dtype, device=cur.device)
    if method == "mean":
        return cur.mean(1, keepdim=True)
    if cur.shape[1] < 2:
        raise ValueError("resample ablation needs at least 2 sequences per batch.")
    return cur.roll(1, dims=1)


def _preserving_ablation(iv: PreservingAblation, model: Transformer, task: Any) -> Effect:
    leaf = "hook_pattern" if iv.preserve == "patterns" else "hook_v"
    later = tuple(f"blocks.{m}.attn.{leaf}" for m in range(iv.layer + 1, model.cfg.n_layers))
    ops = [_slice_op(iv.site, iv.heads, None, lambda cur, ctx: _ablate(iv.method, cur), 0.0 if iv.method == "zero" else None)]
    ops += [Op(site, lambda x, ctx, site=site: ctx.clean[site]) for site in later]
    return Effect(ops, clean_sites=later, batch_dependent=iv.method != "zero")


class _GraftOutputEffect(Effect):
    def __init__(self, iv: GraftOutput, model: Transformer) -> None:
        self.site, self.heads, self.positions = iv.site, iv.heads, iv.positions
        self.donor = donor_model(model, iv.checkpoint, iv.checkpoint_run)
        super().__init__([_slice_op(iv.site, iv.heads, iv.positions, self._new)])

    def prepare(self, ctx: Ctx) -> None:
        with torch.no_grad():
            _, cache = self.donor.run_with_cache(ctx.batch, [self.site])
        self.state = cache[self.site]

    def _new(self, cur: Tensor, ctx: Ctx) -> Tensor:
        return self.state[slice_index(self.site, self.state.dim(), self.heads, self.positions, cur.device)]


def _graft_output(iv: GraftOutput, model: Transformer, task: Any) -> Effect:
    return _GraftOutputEffect(iv, model)


class _GraftParamsEffect(Effect):
    def __init__(self, iv: GraftParams, model: Transformer) -> None:
        self.block = donor_model(model, iv.checkpoint, iv.checkpoint_run).blocks[iv.layer]
        super().__init__([
            Op(f"blocks.{iv.layer}.hook_resid_pre", self._run, edits=False),
            Op(f"blocks.{iv.layer}.hook_resid_post", lambda x, ctx: self.state),
        ])

    def _run(self, x: Tensor, ctx: Ctx) -> Tensor:
        self.state = self.block(x)  # the frozen donor block on this model's input
        return x


def _graft_params(iv: GraftParams, model: Transformer, task: Any) -> Effect:
    return _GraftParamsEffect(iv, model)


COMPILERS: dict[type, Callable[[Any, Transformer, Any], Effect]] = {
    Clamp: _clamp,
    PatternClamp: _pattern_clamp,
    FunctionClamp: _function_clamp,
    IdealLayer1: _ideal_layer1,
    PerfectCopy: _perfect_copy,
    Knockout: _knockout,
    PreservingAblation: _preserving_ablation,
    GraftOutput: _graft_output,
    GraftParams: _graft_params,
}


def compile_effect(iv: Intervention, model: Transformer, task: Any) -> Effect:
    """Compile one intervention for ``model`` (loads checkpoints and user functions once)."""
    compiler = COMPILERS.get(type(iv))
    if compiler is None:
        raise ConfigError(f"intervention kind {iv.kind!r} has no effect implementation.")
    return compiler(iv, model, task)


__all__ = ["Ctx", "Op", "Effect", "compile_effect", "build_pattern", "slice_index", "selection_mask", "replace_slice",
           "load_function", "load_checkpoint", "donor_model", "reference_batch", "TARGET_HOOK"]
