"""HeadScale (scale and/or add seeded noise to heads' outputs): positive, null, no-leak, gradient, packing."""

from __future__ import annotations

import pytest
import torch

from clamp.errors import ConfigError
from clamp.interventions import HeadScale, Window, intervention_from_dict, make_intervener, validate_interventions
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import FewShotConfig
from clamp.tasks.measures import per_run_loss
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8)
TRAIN = TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)
SITE = "blocks.1.attn.hook_z"  # [R, B, T, H, dh]


def trainer(ivs, seeds=(0, 1)) -> Trainer:
    factory = make_intervener(ivs, TASK.build()) if ivs is not None else None
    return Trainer(MODEL, TASK, TRAIN, list(seeds), intervener_factory=factory)


def test_round_trip_and_name():
    iv = HeadScale(layer=1, heads=[0], scale=0.5, noise=0.1, seed=3, windows=[(0, 32)])
    assert intervention_from_dict(iv.to_dict()) == iv and iv.to_dict()["kind"] == "head_scale"


def test_positive_scales_chosen_heads_only():
    iv = HeadScale(layer=1, heads=(0,), scale=0.25)
    t = trainer([iv])
    batch = t.next_batch()
    _, clean = t.model.run_with_cache(batch, [SITE])
    logits, cache = t.intervener.forward(batch, 0, [SITE], True)
    torch.testing.assert_close(cache[SITE][:, :, :, 0], clean[SITE][:, :, :, 0] * 0.25)
    assert torch.equal(cache[SITE][:, :, :, 1], clean[SITE][:, :, :, 1])
    assert (per_run_loss(logits, batch) - per_run_loss(t.model(batch), batch)).abs().min() > 1e-7
    assert t.intervener.firing_metrics()[f"fired/{iv.name}"].tolist() == [1.0, 1.0]


def test_noise_has_its_std_and_does_not_depend_on_packing():
    iv = HeadScale(layer=1, heads=(1,), noise=0.5, seed=7)
    packed, alone = trainer([iv], seeds=(3, 4)), trainer([iv], seeds=(4,))
    alone.model.load_state_dict({k: v[1:] for k, v in packed.model.state_dict().items()})
    batch = packed.next_batch()
    _, clean = packed.model.run_with_cache(batch, [SITE])
    _, cache = packed.intervener.forward(batch, 0, [SITE], True)
    diff = cache[SITE][:, :, :, 1] - clean[SITE][:, :, :, 1]
    assert 0.4 < float(diff.std()) < 0.6 and torch.equal(cache[SITE][:, :, :, 0], clean[SITE][:, :, :, 0])
    _, one = alone.intervener.forward(batch.run(1), 0, [SITE], True)
    torch.testing.assert_close(one[SITE][0], cache[SITE][1])  # run 4 gets the same noise packed or alone
    _, again = packed.intervener.forward(batch, 0, [SITE], True)
    assert torch.equal(again[SITE], cache[SITE])  # same (seed, run, seen): same noise
    _, later = packed.intervener.forward(batch, 16, [SITE], True)
    assert not torch.equal(later[SITE], cache[SITE])  # fresh noise at the next step


def test_gradient_is_scaled():
    def grads(scale):
        t = trainer([HeadScale(layer=1, heads=(0, 1), scale=scale)] if scale is not None else None)
        batch = t.next_batch()
        logits = t.intervener.forward(batch, 0, (), True)[0] if scale is not None else t.model(batch)
        torch.autograd.backward(per_run_loss(logits, batch).sum())
        return t.model.blocks[1].attn.W_V.weight.grad
    assert torch.equal(grads(0.0), torch.zeros_like(grads(0.0)))  # scale 0: the values get no gradient
    assert grads(2.0).abs().max() > 0


def test_null_scale_one_trains_bit_identically_and_never_fires():
    def history(t):
        rows = {}
        t.run(on_eval=lambda seen, m: rows.__setitem__(seen, m))
        return rows, t.model.state_dict()
    base, base_state = history(trainer(None))
    iv = HeadScale(layer=1, heads=(0, 1), scale=1.0, noise=0.0)
    rows, state = history(trainer([iv]))
    for seen, m in base.items():
        assert all(torch.equal(rows[seen][k], v) for k, v in m.items()), seen
        assert rows[seen][f"fired/{iv.name}"].tolist() == [0.0, 0.0]
    assert all(torch.equal(state[k], v) for k, v in base_state.items())


def test_null_is_refused_before_training():
    task = TASK.build()
    with pytest.raises(ConfigError, match="leaves blocks.1.attn.hook_z unchanged: scale=1 and noise=0"):
        validate_interventions([HeadScale(layer=1, heads=(0,))], MODEL.resolve(task.dims()), task, 64)


def test_no_leak_after_window():
    iv = HeadScale(layer=1, heads=(0,), scale=3.0, noise=0.2, windows=[Window(start=0, stop=32)])
    t = trainer([iv])
    fired = []
    t.run(on_eval=lambda seen, m: fired.append((seen, m[f"fired/{iv.name}"][0].item())))
    assert fired == [(0, 1.0), (32, 2.0), (64, 0.0)]
    fresh = Transformer(t.model.cfg, t.model.seeds)
    fresh.load_state_dict(t.model.state_dict())
    batch = t.next_batch()
    assert torch.equal(t.intervener.forward(batch, t.seen, (), True)[0], fresh(batch))
    assert all("forward" not in m.__dict__ and not m._forward_hooks for m in t.model.modules())
