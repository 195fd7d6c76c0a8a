"""The model: hook points, attention sanity, run-axis initialisation, config validation."""

from __future__ import annotations

import pytest
import torch

from clamp.errors import ConfigError
from clamp.model.config import ModelConfig, head_axis
from clamp.model.transformer import Transformer
from clamp.tasks import Batch, FewShotConfig, RepeatConfig


def _model_and_batch(model_cfg, task_cfg, seeds=(0,), n=6):
    task = task_cfg.build()
    model = Transformer(model_cfg.resolve(task.dims()), list(seeds))
    batch = Batch.stack([task.sample(n, torch.Generator().manual_seed(100 + i)) for i in range(len(seeds))])
    return model, batch


def test_hook_names_and_shapes(tiny_task_cfg):
    cfg = ModelConfig(n_layers=2, n_heads=2, d_model=8, attn_only=False)
    model, batch = _model_and_batch(cfg, tiny_task_cfg, seeds=(0, 1), n=6)
    names = model.hook_names()
    R, B, T, H, dh, D, C = 2, 6, 5, 2, 4, 8, tiny_task_cfg.n_labels
    expected = {"hook_embed": (R, B, T, D), "hook_logits": (R, B, T, C)}
    for l in range(2):
        expected.update({
            f"blocks.{l}.hook_resid_pre": (R, B, T, D),
            f"blocks.{l}.attn.hook_q": (R, B, T, H, dh),
            f"blocks.{l}.attn.hook_k": (R, B, T, H, dh),
            f"blocks.{l}.attn.hook_v": (R, B, T, H, dh),
            f"blocks.{l}.attn.hook_attn_scores": (R, B, H, T, T),
            f"blocks.{l}.attn.hook_pattern": (R, B, H, T, T),
            f"blocks.{l}.attn.hook_z": (R, B, T, H, dh),
            f"blocks.{l}.hook_attn_out": (R, B, T, D),
            f"blocks.{l}.hook_resid_mid": (R, B, T, D),
            f"blocks.{l}.hook_mlp_out": (R, B, T, D),
            f"blocks.{l}.hook_resid_post": (R, B, T, D),
        })
    assert set(names) == set(expected)
    assert names[0] == "hook_embed" and names[-1] == "hook_logits"
    _, cache = model.run_with_cache(batch, names)
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name
    assert head_axis("blocks.1.attn.hook_pattern") == 2 and head_axis("blocks.0.attn.hook_z") == 3
    assert head_axis("blocks.0.hook_resid_pre") is None


def test_attn_only_model_has_no_mlp_hooks(tiny_model_cfg, tiny_task_cfg):
    model, _ = _model_and_batch(tiny_model_cfg, tiny_task_cfg)
    assert not any("mlp" in n or "resid_mid" in n for n in model.hook_names())


@pytest.mark.parametrize("positions", ["rope", "learned", "none"])
def test_attention_rows_sum_to_one_and_never_look_ahead(tiny_task_cfg, positions):
    cfg = ModelConfig(n_layers=2, n_heads=2, d_model=8, positions=positions)
    model, batch = _model_and_batch(cfg, tiny_task_cfg)
    _, cache = model.run_with_cache(batch, ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"])
    for p in cache.values():
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
        assert (p.triu(1) == 0).all()


def test_future_tokens_do_not_change_past_logits(tiny_model_cfg):
    task = RepeatConfig(vocab=11, half=4).build()
    model = Transformer(tiny_model_cfg.resolve(task.dims()), [0])
    batch = task.sample(3, torch.Generator().manual_seed(0))
    changed = Batch(batch.tokens.clone(), batch.targets)
    changed.tokens[..., -1] = (changed.tokens[..., -1] + 1) % 11
    a, b = model(batch), model(changed)
    torch.testing.assert_close(a[..., :-1, :], b[..., :-1, :], rtol=0, atol=0)
    assert not torch.equal(a[..., -1, :], b[..., -1, :])


def test_packed_init_equals_single_run_init(tiny_model_cfg, tiny_task_cfg):
    cfg = tiny_model_cfg.resolve(tiny_task_cfg.build().dims())
    packed = Transformer(cfg, [3, 1, 4])
    for r, seed in enumerate([3, 1, 4]):
        single = Transformer(cfg, [seed]).state_for_run(0)
        for k, v in packed.state_for_run(r).items():
            assert torch.equal(v, single[k]), k


def test_packed_forward_equals_single_forward(tiny_model_cfg, tiny_task_cfg):
    model, batch = _model_and_batch(tiny_model_cfg, tiny_task_cfg, seeds=(5, 6, 7))
    out = model(batch)
    cfg = model.cfg
    for r, seed in enumerate((5, 6, 7)):
        single = Transformer(cfg, [seed])(batch.run(r))
        torch.testing.assert_close(out[r : r + 1], single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(d_model=10, n_heads=3), "d_model"),
        (dict(positions="alibi"), "positions"),
        (dict(n_layers=0), "n_layers"),
    ],
)
def test_bad_model_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**kwargs)


def test_model_config_must_fit_task():
    task = FewShotConfig(n_classes=10, d_in=8).build()
    with pytest.raises(ConfigError, match="n_ctx"):
        ModelConfig(n_ctx=3).resolve(task.dims())
    with pytest.raises(ConfigError, match="d_out"):
        ModelConfig(d_out=7).resolve(task.dims())
    with pytest.raises(ConfigError, match="unresolved"):
        Transformer(ModelConfig(), [0])


def test_model_config_round_trip():
    cfg = ModelConfig(n_layers=3, positions="learned")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown keys"):
        ModelConfig.from_dict({"n_layer": 2})


def test_short_and_long_attention_paths_agree(tiny_model_cfg, tiny_task_cfg, monkeypatch):
    import clamp.model.transformer as model_mod

    model, batch = _model_and_batch(tiny_model_cfg, tiny_task_cfg, seeds=(0, 1))
    names = ["blocks.1.attn.hook_attn_scores", "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z"]
    fast_logits, fast = model.run_with_cache(batch, names)
    fast_logits.sum().backward()
    fast_grad = model.blocks[0].attn.W_Q.weight.grad.clone()
    model.zero_grad()
    monkeypatch.setattr(model_mod, "HEADS_LAST_MAX_T", 0)  # force the batched-matmul path
    slow_logits, slow = model.run_with_cache(batch, names)
    slow_logits.sum().backward()
    torch.testing.assert_close(fast_logits, slow_logits, rtol=1e-5, atol=1e-6)
    for n in names:
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_grad, model.blocks[0].attn.W_Q.weight.grad, rtol=1e-4, atol=1e-6)
