"""The torch side of interventions: compiled effects, the per-forward context, slicing, patterns, checkpoints.

Why this file exists: the kinds (:mod:`clamp.interventions.kinds`) are data
classes that each compile themselves, for one model, into a :class:`Compiled`:
a list of :class:`Op` s, each a function ``(activation, ctx) -> activation``
bound to one hook point, plus an optional ``prepare`` step that computes values
before the forward (an idealised residual, a donor model's activations) and the
activations it needs from a clean pass.  The building blocks several kinds share
(selecting heads/positions, named attention patterns, loading checkpoints) live
here once.  Nothing here imports nnsight, so the same ops also run through plain
forward hooks; the applier (:mod:`clamp.interventions.apply`) owns the trace.

Edits never modify an activation in place: the activation is cloned, the clone
edited and returned (in-place edits of tensors autograd saved break backward).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from clamp.errors import ConfigError
from clamp.model.transformer import Transformer
from clamp.model.config import head_axis
from clamp.tasks.batch import Batch

QUERY_AXIS_LEAVES = ("hook_attn_scores", "hook_pattern")


@dataclass
class Context:
    """What an op (and a user's nnsight function) sees at one forward.

    Attributes:
        batch: the batch ``[R, B, ...]`` (every run of the pack).
        train: True at a training step, False at an evaluation.
        seen: sequences seen per run (a training step is labelled by the count before it).
        runs: the initialisation seeds of the pack's runs, in run-axis order.
        clean: activations of the clean pass (for kinds that need one).
    """

    batch: Batch
    train: bool
    seen: int = 0
    runs: tuple[int, ...] = ()
    clean: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Op:
    """One function at one hook point.

    ``edits=False`` marks a read-only op.  ``traced=True`` marks a user's nnsight
    function: it is called as ``fn(model, ctx)`` with the wrapped model, inside the
    trace, when the forward reaches ``site``, and reads/assigns ``site``'s output with
    nnsight's own syntax; ``blocking`` then detaches what it changed.
    """

    site: str
    fn: Callable[..., Any]
    edits: bool = True
    traced: bool = False
    blocking: bool = False


class Compiled:
    """An intervention compiled for one model: ops at hook points, an optional prepare step, clean-pass needs.

    Args:
        ops: the ops, in the intervention's order (the applier runs them in forward order).
        clean_sites: activations needed from a clean pass (``ctx.clean``).
        batch_dependent: the edit of one sequence depends on the other sequences of the
            batch (a mean or resample ablation over the batch, a user function): evaluation
            then runs each evaluation set in one forward instead of in chunks.
        needs_nnsight: only the nnsight backend can apply it (a user's nnsight function).
        prepare: called with the :class:`Context` before each forward (computes values the
            ops read, e.g. into ``state``).
        state: a dict the ops and ``prepare`` share; emptied after every forward, so no
            graph outlives its step.
    """

    def __init__(self, ops: list[Op], clean_sites: tuple[str, ...] = (), batch_dependent: bool = False,
                 needs_nnsight: bool = False, prepare: Callable[[Context], None] | None = None,
                 state: dict | None = None) -> None:
        self.ops = ops
        self.clean_sites = clean_sites
        self.batch_dependent = batch_dependent
        self.needs_nnsight = needs_nnsight
        self._prepare = prepare
        self.state: dict = {} if state is None else state

    def prepare(self, ctx: Context) -> None:
        """Compute values needed by the ops (called before the forward)."""
        if self._prepare is not None:
            self._prepare(ctx)

    def release(self) -> None:
        """Drop per-forward state so no graph outlives its step."""
        self.state.clear()


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


# --------------------------------------------------------------------------- checkpoints


def load_packed_weights(path: str) -> dict[str, Tensor]:
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
    if not isinstance(model, Transformer):  # a foreign model (clamp.model.foreign) has no run axis to index
        raise ConfigError("checkpoint grafts and reference means from a checkpoint need the built-in model (ModelConfig); "
                          "a foreign model's checkpoint has no run axis: use ModuleEdit or an NnsightIntervention")
    state = load_packed_weights(path)
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


def reference_batch(task: Any, size: int, seed: int, n_runs: int) -> Batch:
    """``size`` training sequences drawn with ``seed``, the same for every run."""
    b = task.sample(size, torch.Generator().manual_seed(seed))
    return Batch.stack([b] * n_runs)




# --------------------------------------------------------------------------- ops shared by several kinds


def resolve_heads(n_heads: int, heads: tuple[int, ...] | None, keep: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
    """``heads``, or every head but ``keep`` when ``keep`` is given."""
    if keep is not None:
        return tuple(h for h in range(n_heads) if h not in keep)
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


def slice_op(site: str, heads: tuple[int, ...] | None, positions: tuple[int, ...] | None,
             new: Callable[[Tensor, Context], Tensor], constant: float | None = None) -> Op:
    """An op replacing the selected slice with ``new(slice, ctx)``, or with the scalar ``constant``.

    A constant is written with one ``torch.where`` against a cached mask (no copy of
    the activation, and the gradient is the same: zero on the slice).
    """
    indices: dict[tuple, Any] = {}  # built once per (shape, device)

    def fn(x: Tensor, ctx: Context) -> Tensor:
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


def ablate(method: str, cur: Tensor) -> Tensor:
    """The ablated value of a slice ``[R, B, ...]``: 0, its batch mean, or the previous sequence's (resample)."""
    if method == "zero":
        return torch.zeros((), dtype=cur.dtype, device=cur.device)
    if method == "mean":
        return cur.mean(1, keepdim=True)
    if cur.shape[1] < 2:
        raise ValueError("resample ablation needs at least 2 sequences per batch.")
    return cur.roll(1, dims=1)


__all__ = ["Context", "Op", "Compiled", "build_pattern", "induction_row", "slice_index", "selection_mask",
           "replace_slice", "slice_op", "resolve_heads", "ablate", "load_packed_weights", "donor_model",
           "reference_batch", "position_axis"]
