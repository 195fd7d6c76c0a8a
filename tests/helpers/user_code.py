"""User code the tests refer to by import path (``"helpers.user_code:sharpen"``), as a study file's would be.

Shared by several test modules: a spawned worker finds it because the tests' folder is on ``sys.path``.
"""

from __future__ import annotations

import torch

from clamp.interventions import (
    Clamp, FunctionClamp, GraftOutput, GraftParams, Knockout, PreservingAblation, ideal_layer1, knockout_heads,
    match_clamp, perfect_copy, prev_token_pattern_clamp, uniform_pattern_clamp,
)
from clamp.tasks.batch import Batch


def shift_pattern(batch: Batch) -> torch.Tensor:
    """A user pattern ``[R, B, 1 head, T, T]``: every row attends to position 0 (a function of the batch only)."""
    R, B, T = batch.tokens.shape
    p = torch.zeros(R, B, 1, T, T)
    p[..., 0] = 1.0
    return p


def kinds(ckpt: str) -> dict[str, object]:
    """One intervention of every kind (and variant), with the activation each sets."""
    return {
        "clamp": Clamp(site="blocks.0.attn.hook_z", heads=(1,), value=0.5),
        "prev_token": prev_token_pattern_clamp(layer=0, head=0),
        "uniform": uniform_pattern_clamp(layer=1, head=1),
        "match": match_clamp(layer=1, head=0, strength=0.9),
        "function": FunctionClamp(site="blocks.0.attn.hook_pattern", heads=(1,), fn="helpers.user_code:shift_pattern"),
        "ideal_layer1": ideal_layer1(),
        "perfect_copy": perfect_copy(layer=1, head=1),
        "knockout_zero": knockout_heads(layer=1, keep=[0]),
        "knockout_mean": Knockout(site="blocks.0.attn.hook_z", heads=(0,), method="mean"),
        "knockout_resample": Knockout(site="blocks.0.attn.hook_pattern", heads=(1,), method="resample"),
        "knockout_ref": Knockout(site="blocks.0.hook_attn_out", method="mean", mean_over="reference", reference_size=8),
        "knockout_ref_ckpt": Knockout(site="blocks.0.attn.hook_v", heads=(0, 1), method="mean", mean_over="reference",
                                      reference_size=8, checkpoint=ckpt, checkpoint_run=1),
        "keep_patterns": PreservingAblation(layer=0, heads=(0,), preserve="patterns"),
        "keep_values": PreservingAblation(layer=0, heads=(1,), preserve="values", method="mean"),
        "graft_output": GraftOutput(site="blocks.0.hook_resid_post", checkpoint=ckpt),
        "graft_params": GraftParams(layer=1, checkpoint=ckpt, checkpoint_run=0),
    }


def sharpened(pattern: torch.Tensor, head: int, power: float) -> torch.Tensor:
    """The reference edit: head ``head``'s rows raised to ``power`` and renormalised."""
    out = pattern.clone()
    p = pattern[:, :, head] ** power
    out[:, :, head] = p / p.sum(-1, keepdim=True)
    return out


def sharpen(model, ctx, head: int = 0, power: float = 4.0) -> None:
    pattern = model.blocks[1].attn.hook_pattern.output  # [R, B, H, T, T]
    model.blocks[1].attn.hook_pattern.output = sharpened(pattern, head, power)


def read_only(model, ctx) -> None:
    model.blocks[1].attn.hook_pattern.output.sum()
