"""The hand-written attention backward against autograd (issue 12 item 8).

At the flagship shape (2 layers x 8 heads, d_model 64, T = 5, batch 32) every parameter's
gradient through the fused node and through the step-by-step nodes is checked against a
float64 model whose attention is plain torch (the batched-matmul path) and whose LayerNorm
is torch's, so autograd differentiates all of it; on a tiny shape the torch side of the
hand-written backward passes ``torch.autograd.gradcheck`` in double precision.
"""

from __future__ import annotations

import copy

import pytest
import torch

from clamp.model import native, shortattn
from clamp.model import transformer as model_mod
from clamp.model.config import ModelConfig
from clamp.model.layers import rope_tables
from clamp.model.transformer import Transformer
from clamp.tasks import FewShotConfig
from clamp.tasks.measures import per_run_loss


def _grads(model: Transformer, batch) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.autograd.backward(per_run_loss(model(batch), batch).sum())
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def flagship():
    task = FewShotConfig().build()
    model = Transformer(ModelConfig(n_layers=2, n_heads=8, d_model=64, init="singh2024").resolve(task.dims()), [0, 1])
    batch = task.sample_runs(32, [torch.Generator().manual_seed(s) for s in (10, 11)])
    return model, batch


@pytest.fixture(scope="module")
def reference(flagship):
    """Float64 gradients, autograd through plain torch attention and LayerNorm."""
    model, batch = flagship
    ref = copy.deepcopy(model).double()
    saved = model_mod.HEADS_LAST_MAX_T
    model_mod.HEADS_LAST_MAX_T = 0  # the batched-matmul path: no hand-written backward
    try:
        return _grads(ref, batch)
    finally:
        model_mod.HEADS_LAST_MAX_T = saved


def _watch(model: Transformer, how: str) -> list:
    if how == "fused":
        return []
    if how == "step":  # a forward hook on the pattern: the step-by-step nodes (QKVScores, Softmax, MixHeads)
        return [b.attn.hook_pattern.register_forward_hook(lambda m, i, o: None) for b in model.blocks]
    # "replaced": q, k and v handed back by a hook, as an intervention does (QKVScores' replaced slices)
    return [getattr(b.attn, h).register_forward_hook(lambda m, i, o: o.clone())
            for b in model.blocks for h in ("hook_q", "hook_k", "hook_v")]


@pytest.mark.parametrize("how", ["fused", "step", "replaced"])
def test_every_parameter_gradient_matches_autograd_at_the_flagship_shape(flagship, reference, how):
    model, batch = flagship
    if how == "fused" and native.lib() is None:
        pytest.skip("no compiled kernels: there is no fused path")
    calls = []
    real = shortattn.fused_attention
    handles = _watch(model, how)
    try:
        shortattn.fused_attention = lambda *a: calls.append(1) or real(*a)
        grads = _grads(model, batch)
    finally:
        shortattn.fused_attention = real
        for h in handles:
            h.remove()
    fused = native.lib() is not None and how == "fused"
    assert len(calls) == (2 if fused else 0)  # the path under test is the one that ran
    assert grads.keys() == reference.keys()
    assert len(grads) == len(list(model.parameters()))  # every parameter gets a gradient
    for name, g in grads.items():
        ref = reference[name]
        scale = float(ref.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(g.double(), ref, rtol=1e-4, atol=2e-5 * scale, msg=name)


def _tiny(dtype=torch.float64):
    R, B, T, H, dh = 1, 2, 4, 2, 4
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(R, B, T, 3, H, dh, generator=gen, dtype=dtype, requires_grad=True)
    rot = shortattn.rope_rotation(*rope_tables(T, dh, 10_000.0, torch.device("cpu")))
    rot = (rot[0].to(dtype), rot[1].to(dtype))
    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)[:, :, None]
    return qkv, rot, mask, (R, B, T, H, dh)


def test_gradcheck_attention_nodes_in_double():
    qkv, rot, mask, shape = _tiny()

    def attention(x):
        s, vT = shortattn.qkv_scores(x, rot, 0.5, mask)
        return shortattn.mix_heads(shortattn.softmax(s), vT, shape)

    assert torch.autograd.gradcheck(attention, (qkv,))

    def scores_only(x):
        return shortattn.qkv_scores(x, rot, 0.5, mask)[0].masked_fill(torch.isinf(mask), 0.0)

    assert torch.autograd.gradcheck(scores_only, (qkv,))


def test_gradcheck_replaced_slices_in_double():
    qkv, rot, mask, shape = _tiny()
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)

    def attention(x, q_, v_):
        s, vT = shortattn.qkv_scores(x, rot, 0.5, mask, (q_, None, v_))
        return shortattn.mix_heads(shortattn.softmax(s), vT, shape)

    assert torch.autograd.gradcheck(attention, (qkv, q, v))


def test_gradcheck_mix_heads_in_double():
    """The pattern-times-values node (the layout and score products are inside QKVScores, checked above)."""
    p = torch.rand(4, 4, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: shortattn.mix_heads(a, b, (1, 1, 4, 4, 4)), (p, v))


def test_gradcheck_whole_tiny_model_in_double():
    """The model in double (torch attention nodes with hand-written backward, torch LayerNorm), through its inputs."""
    task = FewShotConfig(n_classes=6, d_in=4).build()
    model = Transformer(ModelConfig(n_layers=2, n_heads=2, d_model=8).resolve(task.dims()), [0]).double()
    batch = task.sample(3, torch.Generator().manual_seed(0))
    emb = model.embed(batch).detach().requires_grad_()

    def forward(e):
        x = e
        for block in model.blocks:
            x = block(x)
        return model.unembed(model.ln_final(x))

    assert torch.autograd.gradcheck(forward, (emb,))
