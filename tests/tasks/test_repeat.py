"""Repeated random tokens that only induction can solve (issue 16 item 0)."""

from __future__ import annotations

import math

import pytest
import torch

from clamp.model.config import ModelConfig
from clamp.tasks import RepeatConfig, task_from_dict
from clamp.tasks.base import EvalView
from clamp.training.config import TrainConfig
from clamp.training.trainer import train


def test_legacy_layout_unchanged_and_key_unchanged():
    cfg = RepeatConfig(vocab=20, half=6)
    assert cfg.to_dict() == {"kind": "repeat", "vocab": 20, "half": 6}
    b = cfg.build().sample(3, torch.Generator().manual_seed(0))
    first = torch.randint(20, (3, 6), generator=torch.Generator().manual_seed(0))
    assert torch.equal(b.tokens[0], torch.cat([first, first], 1))
    assert task_from_dict(RepeatConfig(vocab=20, half=6, min_half=3, max_prefix=2).to_dict()).max_prefix == 2


def test_random_layout_moves_and_resizes_the_repeat():
    cfg = RepeatConfig(vocab=50, half=8, min_half=3, max_prefix=5)
    b = cfg.build().sample(400, torch.Generator().manual_seed(0))
    tok, first, second = b.tokens[0], b.meta["first_rows"][0], b.meta["second_rows"][0]
    starts, lengths = set(), set()
    for s in range(400):
        f, sec = first[s].nonzero()[:, 0], second[s].nonzero()[:, 0]
        L = len(f) + 1
        assert len(sec) == L - 1
        start = int(f[0])
        starts.add(start)
        lengths.add(L)
        assert torch.equal(tok[s, start : start + L], tok[s, start + L : start + 2 * L])  # the copy
        assert int(sec[0]) == start + L  # rows predicting tokens 2..L of the second segment
    assert starts == set(range(6)) and lengths == set(range(3, 9))


def test_repeat_metrics_known_answers():
    cfg = RepeatConfig(vocab=16, half=6, min_half=3, max_prefix=4)
    task = cfg.build()
    b = task.sample_runs(8, [torch.Generator().manual_seed(0)])
    perfect = torch.nn.functional.one_hot(b.targets.clamp_min(0), 16).float() * 50  # right answer everywhere
    m = task.eval_metrics(EvalView("train", b, perfect, {}))
    assert m["loss/second_repeat"].item() < 1e-6 and m["loss/first_repeat"].item() < 1e-6
    uniform = task.eval_metrics(EvalView("train", b, torch.zeros_like(perfect), {}))
    assert math.isclose(uniform["loss/second_repeat"].item(), math.log(16), rel_tol=1e-6)
    rule = task.default_phase_rule()
    assert rule.metric == "loss/second_repeat" and math.isclose(rule.threshold, 0.5 * math.log(16))


def _second_loss(layers: int, task: RepeatConfig, n: int) -> float:
    seen = []
    train(ModelConfig(n_layers=layers, n_heads=2, d_model=32), task,
          TrainConfig(n_sequences=n, batch_size=32, lr=3e-3, eval_every=n, eval_size=256), seeds=[0],
          callback=lambda s, m: seen.append(m["loss/second_repeat"].item()))
    return seen[-1]


@pytest.mark.slow
def test_only_a_two_layer_model_solves_the_randomised_repeat():
    """Fixed offset: 1 layer copies positionally.  Random offset and length: 1 layer cannot, 2 layers can."""
    ln_v = math.log(32)
    legacy_1l = _second_loss(1, RepeatConfig(vocab=32, half=8), 12_000)
    rand = RepeatConfig(vocab=32, half=8, min_half=4, max_prefix=8)
    rand_1l, rand_2l = _second_loss(1, rand, 30_000), _second_loss(2, rand, 30_000)
    assert legacy_1l < 0.2 * ln_v  # the positional shortcut (why the old task was no test of induction)
    assert rand_1l > 0.7 * ln_v  # measured 2.8 of ln 32 = 3.47: only "some earlier token", no copying
    assert rand_2l < 0.5 * ln_v  # measured about 1.1: induction
