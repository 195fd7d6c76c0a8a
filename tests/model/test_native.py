"""The compiled kernels against their torch code.

Layout changes and products are bit-identical; softmax and LayerNorm (their own exp and
reduction order) agree to rounding; the fused attention equals the step-by-step path bit for
bit, so watching a hook never changes the numbers.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from clamp.model import layernorm, native, shortattn
from clamp.tasks.measures import per_run_loss
from clamp.model.config import ModelConfig
from clamp.model.layers import rope_tables
from clamp.model.transformer import Transformer
from clamp.tasks import FewShotConfig

needs_native = pytest.mark.skipif(native.lib() is None, reason=f"no compiled kernels here ({native.status()})")


def test_kernels_build_where_there_is_a_compiler():
    if shutil.which("cc") is None:
        pytest.skip("no C compiler on this machine")
    assert native.lib() is not None, native.status()
    assert native.status().startswith("native: compiled")


def _both(fn, monkeypatch):
    """``fn()`` with the kernels, then with the torch code."""
    fast = fn()
    with monkeypatch.context() as m:
        m.setattr(shortattn, "_lib", lambda x: None)
        m.setattr(native, "lib", lambda: None)
        slow = fn()
    return fast, slow


def _rot(T: int, dh: int) -> shortattn.Rotation:
    return shortattn.rope_rotation(*rope_tables(T, dh, 10_000.0, torch.device("cpu")))


SHAPES = [(1, 2, 5, 8, 8), (2, 3, 5, 3, 6), (3, 4, 9, 16, 8), (1, 5, 2, 1, 16), (2, 2, 5, 8, 32)]  # R, B, T, H, dh


@needs_native
@pytest.mark.parametrize("shape", SHAPES)
def test_layout_changes_bit_identical(shape, monkeypatch):
    R, B, T, H, dh = shape
    qkv = torch.randn(R, B, T, 3, H, dh)
    for x in (qkv[:, :, :, 1], qkv[:, :, :, 2].contiguous(), qkv[:, :, :, 0].transpose(1, 2).contiguous().transpose(1, 2)):
        for layout, rot in (("dt", None), ("dt", _rot(T, dh)), ("td", None)):
            a, b = _both(lambda: shortattn._to_heads(x, layout, rot), monkeypatch)
            assert torch.equal(a, b), (layout, rot is not None)
            back, ref = _both(lambda: shortattn._from_heads(a, shape, layout, shortattn.inverse(rot)), monkeypatch)
            assert torch.equal(back, ref)
            if rot is None:
                assert torch.equal(back, x)  # a plain copy there and back


@needs_native
@pytest.mark.parametrize("shape", SHAPES)
def test_products_bit_identical(shape, monkeypatch):
    R, B, T, H, dh = shape
    N = R * B * H
    q, k, v = torch.randn(dh, T, N), torch.randn(dh, T, N), torch.randn(T, dh, N)
    p, g, gz = torch.rand(T, T, N), torch.randn(T, T, N), torch.randn(T, dh, N)
    mask = torch.full((T, T), float("-inf")).triu(1)[:, :, None]
    for fn in (lambda: shortattn._scores_fwd(q, k, 0.3, mask),
               lambda: shortattn._scores_bwd(q, k, g, 0.3, (True, True)),
               lambda: shortattn._mix_fwd(p, v),
               lambda: shortattn._mix_bwd(p, v, gz, (True, True))):
        a, b = _both(fn, monkeypatch)
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert torch.equal(x, y)


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_matches_the_torch_code(shape, monkeypatch):
    """With the compiled softmax (its own exp) the whole attention agrees with the torch code to rounding."""
    R, B, T, H, dh = shape
    qkv0 = torch.randn(R, B, T, 3, H, dh)
    mask = torch.full((T, T), float("-inf")).triu(1)[:, :, None]
    gz = torch.randn(R, B, T, H, dh)

    def run():
        qkv = qkv0.clone().requires_grad_()
        s, vT = shortattn.qkv_scores(qkv, _rot(T, dh), dh ** -0.5, mask)
        z = shortattn.mix_heads(shortattn.softmax(s), vT, (R, B, T, H, dh))
        torch.autograd.backward(z, gz)
        return z.detach(), qkv.grad

    fast, slow = _both(run, monkeypatch)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@needs_native
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_attention_equals_the_step_path(shape):
    R, B, T, H, dh = shape
    qkv0 = torch.randn(R, B, T, 3, H, dh)
    mask = torch.full((T, T), float("-inf")).triu(1)[:, :, None]
    gz = torch.randn(R, B, T, H, dh)
    rot = _rot(T, dh)

    def step():
        qkv = qkv0.clone().requires_grad_()
        s, vT = shortattn.qkv_scores(qkv, rot, dh ** -0.5, mask)
        p = shortattn.softmax(s)
        z = shortattn.mix_heads(p, vT, (R, B, T, H, dh))
        torch.autograd.backward(z, gz)
        return z.detach(), p.detach(), qkv.grad

    def fused():
        qkv = qkv0.clone().requires_grad_()
        z, p = shortattn.fused_attention(qkv, rot, dh ** -0.5, mask)
        torch.autograd.backward(z, gz)
        return z.detach(), p, qkv.grad

    for a, b in zip(step(), fused()):
        assert torch.equal(a, b)


def test_softmax_matches_torch():
    s = torch.randn(5, 5, 300) * 10 + torch.full((5, 5), float("-inf")).triu(1)[:, :, None]
    s[0, 0, 0] = -200.0  # far below the row's max: underflows to 0 in both
    p = shortattn.softmax(s.clone().requires_grad_())
    torch.testing.assert_close(p, torch.softmax(s, dim=1), rtol=1e-6, atol=1e-7)
    assert torch.equal(p.detach().sum(1).round(decimals=5), torch.ones(5, 300))
    g = torch.randn(5, 5, 300)
    x = s.clone().requires_grad_()
    (ga,) = torch.autograd.grad(shortattn.softmax(x), x, g)
    (gb,) = torch.autograd.grad(torch.softmax(x, dim=1), x, g)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


def test_fused_attention_matches_matmul_attention():
    R, B, T, H, dh = 2, 3, 5, 4, 8
    qkv = torch.randn(R, B, T, 3, H, dh, dtype=torch.float64)
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)[:, :, None]
    s, vT = shortattn.qkv_scores(qkv, None, 0.5, mask)
    z = shortattn.mix_heads(torch.softmax(s, dim=1), vT, (R, B, T, H, dh))
    q, k, v = (qkv[:, :, :, i].permute(0, 1, 3, 2, 4) for i in range(3))  # (R, B, H, T, dh)
    ref_s = (q @ k.transpose(-1, -2) * 0.5).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    ref_z = (ref_s.softmax(-1) @ v).permute(0, 1, 3, 2, 4)
    torch.testing.assert_close(s.view(T, T, R, B, H).permute(2, 3, 4, 0, 1), ref_s)
    torch.testing.assert_close(z, ref_z)


def test_replaced_slices_give_the_same_as_the_projection(monkeypatch):
    """A hook that hands back an equal tensor must not change the attention (nor its gradient)."""
    R, B, T, H, dh = 2, 3, 5, 8, 8
    qkv0 = torch.randn(R, B, T, 3, H, dh)
    mask = torch.full((T, T), float("-inf")).triu(1)[:, :, None]

    def run(replaced: tuple[bool, bool, bool]):
        qkv = qkv0.clone().requires_grad_()
        reps = tuple(qkv[:, :, :, i].clone() if r else None for i, r in enumerate(replaced))
        s, vT = shortattn.qkv_scores(qkv, _rot(T, dh), dh ** -0.5, mask, reps)
        z = shortattn.mix_heads(torch.softmax(s, dim=1), vT, (R, B, T, H, dh))
        z.square().sum().backward()
        return z.detach(), qkv.grad

    ref_z, ref_g = run((False, False, False))
    for replaced in ((True, False, False), (False, True, True), (True, True, True)):
        z, g = run(replaced)
        assert torch.equal(z, ref_z) and torch.equal(g, ref_g)


def _train(cfg: ModelConfig, task, watch: bool = False) -> dict:
    model = Transformer(cfg, [0, 1])
    if watch:  # a forward hook on every pattern: the layers take the step-by-step path
        for block in model.blocks:
            block.attn.hook_pattern.register_forward_hook(lambda m, i, o: None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    for _ in range(3):
        b = task.sample_runs(16, gens)
        loss = per_run_loss(model(b), b).sum()
        opt.zero_grad()
        torch.autograd.backward(loss)
        opt.step()
    return model.state_dict()


def test_watching_a_hook_does_not_change_training():
    """Fused (nobody watching) and step-by-step (a hook on the pattern) paths train bit-identically."""
    task = FewShotConfig(n_classes=10, d_in=16).build()
    cfg = ModelConfig(n_layers=2, n_heads=8, d_model=64).resolve(task.dims())
    a, b = _train(cfg, task), _train(cfg, task, watch=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_with_and_without_kernels_agree(monkeypatch):
    task = FewShotConfig(n_classes=10, d_in=16).build()
    cfg = ModelConfig(n_layers=2, n_heads=8, d_model=64).resolve(task.dims())
    fast, slow = _both(lambda: _train(cfg, task), monkeypatch)
    for key in fast:
        torch.testing.assert_close(fast[key], slow[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 32, 5, 64), (5, 32, 5, 64), (3, 7, 33), (2, 4, 1500)])
def test_layernorm_matches_torch(shape):
    torch.manual_seed(0)
    x = (torch.randn(*shape) * 3 + 1).requires_grad_()
    w = torch.rand(shape[0], shape[-1], requires_grad=True)
    b = torch.randn(shape[0], shape[-1], requires_grad=True)
    g = torch.randn(*shape)
    out = layernorm.run_layer_norm(x, w, b)
    grads = torch.autograd.grad(out, (x, w, b), g)
    view = (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)
    ref = F.layer_norm(x, shape[-1:]) * w.view(view) + b.view(view)
    ref_grads = torch.autograd.grad(ref, (x, w, b), g)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def test_layernorm_is_deterministic():
    x, w, b = torch.randn(3, 40, 64), torch.rand(3, 64), torch.randn(3, 64)
    assert torch.equal(layernorm.run_layer_norm(x, w, b), layernorm.run_layer_norm(x, w, b))


def test_disabled_or_unbuildable_kernels_fall_back(monkeypatch, tmp_path):
    saved = dict(native._state)
    try:
        native._state.clear()
        monkeypatch.setenv("CLAMP_NATIVE", "0")
        assert native.lib() is None and "CLAMP_NATIVE=0" in native.status()
        native._state.clear()
        monkeypatch.setenv("CLAMP_NATIVE", "1")
        monkeypatch.setenv("CLAMP_CACHE_DIR", str(tmp_path))
        monkeypatch.setenv("CC", "no-such-compiler-here")
        assert native.lib() is None and "no C compiler" in native.status()
        native._state.clear()
        monkeypatch.setenv("CC", "false")  # a compiler that always fails
        with pytest.warns(UserWarning, match="torch path"):
            assert native.lib() is None
        assert "build failed" in native.status()
        assert not list(tmp_path.rglob("*.so"))  # no half-built library left behind
    finally:
        native._state.clear()
        native._state.update(saved)


def test_pattern_cache_without_hooks_equals_hooked_cache():
    """run_with_cache hands patterns over without hooks (layers stay fused); same numbers as with hooks."""
    task = FewShotConfig(n_classes=10, d_in=16).build()
    model = Transformer(ModelConfig().resolve(task.dims()), [0, 1])
    batch = task.sample_runs(8, [torch.Generator().manual_seed(s) for s in (0, 1)])
    names = ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch, names)
        hooked_logits, hooked = model.run_with_cache(batch, names + ["blocks.1.attn.hook_z"])  # hooks: step path
    assert torch.equal(logits, hooked_logits)
    assert all(torch.equal(cache[n], hooked[n]) for n in names)
    assert all(block.attn.capture is None for block in model.blocks)  # nothing left behind
