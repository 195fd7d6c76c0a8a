"""Backward hooks on every hook point fire on every attention path, with the gradient autograd gives.

The fused attention node (clamp.model.shortattn.FusedAttention) never calls the score and
pattern hook points; a layer must leave it whenever anyone listens to those points in
either direction, or a backward hook there silently never fires (issue 12).
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules import module as nn_module

from clamp.model import native
from clamp.model import transformer as model_mod
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import FewShotConfig
from clamp.tasks.measures import per_run_loss

ATTN_POINTS = ["hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"]


def _model_and_batch():
    task = FewShotConfig(n_classes=10, d_in=16).build()
    model = Transformer(ModelConfig(n_layers=2, n_heads=8, d_model=64).resolve(task.dims()), [0, 1])
    batch = task.sample_runs(8, [torch.Generator().manual_seed(s) for s in (0, 1)])
    return model, batch


def _backward(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    torch.autograd.backward(per_run_loss(model(batch), batch).sum())


def _reference_grads(model, batch) -> dict[str, torch.Tensor]:
    """Output gradients of every hook point, read through forward hooks that hand back a copy of the output
    (so that every point, q, k and v included, lies on the gradient's path; always the step-by-step path)."""
    outs: dict[str, torch.Tensor] = {}
    handles = []
    for name in model.hook_names():
        def keep(_m, _i, out, name=name):
            out = out.clone()
            out.retain_grad()
            outs[name] = out
            return out
        handles.append(model.hook_point(name).register_forward_hook(keep))
    _backward(model, batch)
    for h in handles:
        h.remove()
    return {n: t.grad.clone() for n, t in outs.items() if t.grad is not None}


@pytest.mark.parametrize("kind", ["full_backward", "full_backward_pre"])
@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("point", ATTN_POINTS)
def test_backward_hook_on_each_attention_point_fires_with_autograd_gradient(kind, layer, point):
    model, batch = _model_and_batch()
    name = f"blocks.{layer}.attn.{point}"
    ref = _reference_grads(model, batch)[name]
    got = []
    module = model.hook_point(name)
    if kind == "full_backward":
        handle = module.register_full_backward_hook(lambda m, gin, gout: got.append(gout[0].clone()))
    else:
        handle = module.register_full_backward_pre_hook(lambda m, gout: got.append(gout[0].clone()))
    try:
        _backward(model, batch)
    finally:
        handle.remove()
    assert len(got) == 1, f"{kind} hook on {name} fired {len(got)} times"
    torch.testing.assert_close(got[0], ref, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:Full backward hook")
@pytest.mark.parametrize("path", ["short", "long"])
def test_backward_hook_on_every_hook_point_fires(path, monkeypatch):
    if path == "long":
        monkeypatch.setattr(model_mod, "HEADS_LAST_MAX_T", 0)  # the batched-matmul path
    model, batch = _model_and_batch()
    fired: dict[str, int] = {}
    handles = [model.hook_point(n).register_full_backward_hook(lambda m, gi, go, n=n: fired.__setitem__(n, fired.get(n, 0) + 1))
               for n in model.hook_names()]
    _backward(model, batch)
    for h in handles:
        h.remove()
    assert fired == {n: 1 for n in model.hook_names()}


@pytest.mark.filterwarnings("ignore:Full backward hook")
def test_global_backward_hook_sees_the_attention_points():
    model, batch = _model_and_batch()
    seen: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    handle = nn_module.register_module_full_backward_hook(lambda m, gi, go: seen.append(names.get(m, "?")))
    try:
        _backward(model, batch)
    finally:
        handle.remove()
    for layer in (0, 1):
        for point in ("hook_attn_scores", "hook_pattern"):
            assert f"blocks.{layer}.attn.{point}" in seen


@pytest.mark.skipif(native.lib() is None, reason="no compiled kernels: there is no fused path")
def test_an_unwatched_layer_still_takes_the_fused_path(monkeypatch):
    """Only listeners make a layer leave the fused node: a plain forward/backward stays fused."""
    model, batch = _model_and_batch()
    calls = []
    real = model_mod.shortattn.fused_attention
    monkeypatch.setattr(model_mod.shortattn, "fused_attention", lambda *a: calls.append(1) or real(*a))
    _backward(model, batch)
    assert len(calls) == 2
    h = model.blocks[1].attn.hook_pattern.register_full_backward_hook(lambda *a: None)
    calls.clear()
    _backward(model, batch)
    h.remove()
    assert len(calls) == 1  # layer 0 fused, layer 1 (listened to) step by step
