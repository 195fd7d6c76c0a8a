"""Smeared keys (Olsson et al. 2022): weight 0 is the plain model bit for bit; a weight mixes in the previous key."""

from __future__ import annotations

import torch

from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import RepeatConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer


def _models(T_half: int):
    task = RepeatConfig(vocab=11, half=T_half).build()
    plain = ModelConfig(n_layers=2, n_heads=2, d_model=8).resolve(task.dims())
    smeared = ModelConfig(n_layers=2, n_heads=2, d_model=8, smear_keys=True).resolve(task.dims())
    return task, Transformer(plain, [0, 1]), Transformer(smeared, [0, 1])


def test_weight_zero_equals_plain_model_bit_for_bit_short_and_long_contexts():
    for half in (4, 20):  # heads-last path (T <= 32) and batched-matmul path (T > 32)
        task, a, b = _models(half)
        assert set(b.state_dict()) - set(a.state_dict()) == {"blocks.0.attn.smear", "blocks.1.attn.smear"}
        b.load_state_dict({**a.state_dict(), **{k: v for k, v in b.state_dict().items() if "smear" in k}})
        batch = task.sample_runs(3, [torch.Generator().manual_seed(s) for s in (0, 1)])
        assert torch.equal(a(batch), b(batch))
        _, ca = a.run_with_cache(batch, ["blocks.1.attn.hook_pattern"])
        _, cb = b.run_with_cache(batch, ["blocks.1.attn.hook_pattern"])
        assert torch.equal(ca["blocks.1.attn.hook_pattern"], cb["blocks.1.attn.hook_pattern"])


def test_same_init_as_plain_and_to_dict_unchanged_when_off():
    _, a, b = _models(4)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert "smear_keys" not in ModelConfig().to_dict()
    assert ModelConfig(smear_keys=True).to_dict()["smear_keys"] is True


def test_weight_one_uses_previous_key_and_is_learned():
    task, _, b = _models(4)
    batch = task.sample_runs(2, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    with torch.no_grad():
        b.blocks[0].attn.smear.fill_(1.0)
    _, cache = b.run_with_cache(batch, ["blocks.0.attn.hook_k"])
    k = cache["blocks.0.attn.hook_k"]  # smeared keys
    with torch.no_grad():
        b.blocks[0].attn.smear.fill_(0.0)
    _, raw = b.run_with_cache(batch, ["blocks.0.attn.hook_k"])
    raw = raw["blocks.0.attn.hook_k"]
    assert torch.allclose(k[:, :, 1:], raw[:, :, :-1]) and torch.allclose(k[:, :, 0], raw[:, :, 0])
    # the weight receives a gradient and moves in training
    t = Trainer(ModelConfig(n_layers=1, n_heads=2, d_model=8, smear_keys=True), RepeatConfig(vocab=8, half=4),
                TrainConfig(n_sequences=64, batch_size=16, lr=1e-2, eval_every=64, eval_size=16), seeds=[0])
    t.run(64)
    assert t.model.blocks[0].attn.smear.abs().sum() > 0


def test_interventions_act_on_a_smeared_layer():
    from clamp.interventions import knockout_heads, make_intervener

    task_cfg = RepeatConfig(vocab=8, half=4)
    cfg = ModelConfig(n_layers=2, n_heads=2, d_model=8, smear_keys=True)
    tc = TrainConfig(n_sequences=32, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)
    plain = Trainer(cfg, task_cfg, tc, seeds=[0])
    ko = Trainer(cfg, task_cfg, tc, seeds=[0],
                 intervener_factory=make_intervener([knockout_heads(layer=1, keep=[0])], task_cfg.build()))
    batch = plain.eval_sets["train"]
    with torch.no_grad():
        for t in (plain, ko):
            t.model.blocks[0].attn.smear.fill_(0.5)
        lp = plain.model(batch)
        lk, _ = ko.intervener.forward(batch, 0, (), False)
    assert not torch.equal(lp, lk)
