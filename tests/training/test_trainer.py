"""The training loop: packing equivalence, determinism, resume, schedule and the metrics file."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from clamp.errors import ConfigError
from clamp.model.config import ModelConfig
from clamp.tasks import FewShotConfig, RepeatConfig
from clamp.training.trainer import RunSeeds, Trainer, train
from clamp.training.config import TrainConfig


def _collect(model_cfg, task_cfg, train_cfg, seeds):
    rows = {}

    def cb(seen, metrics):
        rows[seen] = {k: v.clone() for k, v in metrics.items()}

    train(model_cfg, task_cfg, train_cfg, seeds, callback=cb)
    return rows


def test_packed_runs_match_separate_runs(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg):
    seeds = [0, 1, 2, 3, 4]
    packed = _collect(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, seeds)
    for r, seed in enumerate(seeds):
        single = _collect(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [seed])
        assert single.keys() == packed.keys()
        for seen in single:
            for name, v in single[seen].items():
                torch.testing.assert_close(packed[seen][name][r], v[0], rtol=1e-4, atol=1e-5, msg=f"{name}@{seen}")


def test_same_seeds_same_numbers(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg):
    a = _collect(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [7, 8])
    b = _collect(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [7, 8])
    for seen in a:
        for name in a[seen]:
            assert torch.equal(a[seen][name], b[seen][name])
    c = _collect(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [9, 8])
    assert not torch.equal(c[256]["train/loss"][0], a[256]["train/loss"][0])


def test_init_data_and_eval_seeds_are_separate(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg):
    base = Trainer(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [RunSeeds(init=1, data=2, eval=3)])
    other_data = Trainer(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [RunSeeds(init=1, data=5, eval=3)])
    other_eval = Trainer(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [RunSeeds(init=1, data=2, eval=6)])
    assert all(torch.equal(a, b) for a, b in zip(base.model.parameters(), other_data.model.parameters()))
    assert torch.equal(base.eval_sets["train"].items, other_data.eval_sets["train"].items)
    assert not torch.equal(base.next_batch().items, other_data.next_batch().items)
    assert not torch.equal(base.eval_sets["train"].items, other_eval.eval_sets["train"].items)


def test_resume_from_state_dict_is_bit_exact(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, tmp_path):
    full = _collect(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [0, 1])
    first = Trainer(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [0, 1])
    first.run(until=128, on_eval=lambda s, m: None)
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    resumed = Trainer(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [0, 1])
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    rows = {}
    resumed.run(on_eval=lambda s, m: rows.__setitem__(s, m))
    assert sorted(rows) == [192, 256]
    for seen, metrics in rows.items():
        for name, v in metrics.items():
            assert torch.equal(v, full[seen][name]), (seen, name)


def test_eval_schedule_in_sequences_seen(tiny_model_cfg, tiny_task_cfg):
    cfg = TrainConfig(n_sequences=100, batch_size=16, eval_every=40, eval_size=8)
    rows = _collect(tiny_model_cfg, tiny_task_cfg, cfg, [0])
    # steps end at 16, 32, 48, ...; evaluate at the first step at or after each multiple of 40, and at the end
    assert sorted(rows) == [0, 48, 80, 112]


def test_metrics_csv_long_format(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, tmp_path):
    path = tmp_path / "metrics.csv"
    train(tiny_model_cfg, tiny_task_cfg, tiny_train_cfg, [3, 4], metrics_path=path)
    df = pd.read_csv(path)
    assert list(df.columns) == ["sequences_seen", "run", "metric", "value"]
    assert set(df["run"]) == {3, 4}
    assert sorted(df["sequences_seen"].unique()) == [0, 64, 128, 192, 256]
    names = set(df["metric"])
    for ev in ("train", "heldout_pairs", "heldout_classes", "heldout_exemplars"):
        assert {f"{ev}/loss", f"{ev}/acc"} <= names
    assert {f"induction/L1H{h}" for h in range(2)} <= names
    assert {f"prev_token/L{l}H{h}" for l in range(2) for h in range(2)} <= names
    assert "induction/L0H0" not in names and "train_batch/loss" in names
    assert df["value"].notna().all()


def test_repeat_task_metrics(tiny_model_cfg):
    rows = _collect(tiny_model_cfg, RepeatConfig(vocab=16, half=5),
                    TrainConfig(n_sequences=64, batch_size=16, eval_every=64, eval_size=16), [0])
    m = rows[64]
    assert {"loss/first_repeat", "loss/second_repeat", "prefix_match/L1H0", "prefix_match/L0H1"} <= set(m)
    assert abs(m["loss/first_repeat"].item() - math.log(16)) < 1.0


def test_learning_happens(tiny_task_cfg):
    cfg = TrainConfig(n_sequences=3200, batch_size=32, lr=3e-3, eval_every=3200, eval_size=128)
    rows = _collect(ModelConfig(n_layers=2, n_heads=2, d_model=16), tiny_task_cfg, cfg, [0])
    assert rows[3200]["train/loss"].item() < rows[0]["train/loss"].item() - 0.3


def test_lr_schedule():
    cfg = TrainConfig(n_sequences=1000, batch_size=10, lr=1.0, warmup_sequences=100, schedule="cosine")
    assert cfg.lr_at(0) == pytest.approx(0.1)
    assert cfg.lr_at(90) == pytest.approx(1.0)
    assert cfg.lr_at(100) == pytest.approx(1.0)
    assert cfg.lr_at(550) == pytest.approx(0.5)
    assert TrainConfig(lr=2e-5).lr_at(10**6) == 2e-5


@pytest.mark.parametrize("kwargs, field", [(dict(lr=0), "lr"), (dict(schedule="step"), "schedule"),
                                           (dict(eval_every=0), "eval_every")])
def test_bad_train_config(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**kwargs)


def test_train_config_round_trip():
    cfg = TrainConfig(betas=(0.8, 0.99), schedule="cosine")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_chunked_evaluation_equals_one_forward(tiny_model_cfg, tiny_task_cfg, monkeypatch):
    import clamp.training.trainer as train_mod

    cfg = TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=40, heldout_eval_size=24)
    t = Trainer(tiny_model_cfg, tiny_task_cfg, cfg, seeds=[0, 1])
    t.run(32)
    monkeypatch.setattr(train_mod, "EVAL_CHUNK", 10**6)
    whole = t.evaluate()
    monkeypatch.setattr(train_mod, "EVAL_CHUNK", 16)  # 40 = 16 + 16 + 8
    chunked = t.evaluate()
    whole.pop("train_batch/loss")  # the first evaluation also reports the batches since the last one
    assert whole.keys() == chunked.keys()
    for k in whole:
        torch.testing.assert_close(whole[k], chunked[k], rtol=1e-6, atol=1e-7)


def test_batch_dependent_intervention_sees_the_whole_evaluation_set(tiny_model_cfg, tiny_task_cfg, monkeypatch):
    import clamp.training.trainer as train_mod
    from clamp.interventions import Knockout, knockout_heads, make_intervener

    monkeypatch.setattr(train_mod, "EVAL_CHUNK", 8)
    cfg = TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=40, heldout_eval_size=24)
    for iv, whole in ((Knockout(site="blocks.0.attn.hook_z", heads=(0,), method="resample"), True),
                      (knockout_heads(layer=1, keep=[0]), False)):
        t = Trainer(tiny_model_cfg, tiny_task_cfg, cfg, seeds=[0], intervener_factory=make_intervener([iv], tiny_task_cfg.build()))
        sizes = []
        forward = t.intervener.forward
        monkeypatch.setattr(t.intervener, "forward", lambda b, *a: (sizes.append(b.size), forward(b, *a))[1])
        t.evaluate()
        assert (max(sizes) == 40) if whole else (max(sizes) == 8), (iv.name, sizes)


def test_heldout_sets_spaced_out_and_resumed_exactly(tiny_model_cfg, tiny_task_cfg, tmp_path):
    from dataclasses import replace

    cfg = TrainConfig(n_sequences=256, batch_size=16, lr=1e-3, eval_every=32, eval_size=32, heldout_eval_every=100)
    seen_with = {}
    Trainer(tiny_model_cfg, tiny_task_cfg, cfg, [0]).run(on_eval=lambda s, m: seen_with.__setitem__(s, "heldout_pairs/loss" in m))
    # at 0, at the first evaluation after 100 and 200, and at the end; the train set every time
    assert [s for s, h in seen_with.items() if h] == [0, 128, 224, 256]
    assert sorted(seen_with) == list(range(0, 257, 32))
    # every metric it reports equals the every-evaluation run's
    every = _collect(tiny_model_cfg, tiny_task_cfg, replace(cfg, heldout_eval_every=None), [0])
    sparse = _collect(tiny_model_cfg, tiny_task_cfg, cfg, [0])
    for seen, metrics in sparse.items():
        for name, v in metrics.items():
            assert torch.equal(v, every[seen][name]), (seen, name)
    # and resuming keeps the held-out schedule
    first = Trainer(tiny_model_cfg, tiny_task_cfg, cfg, [0])
    first.run(until=160, on_eval=lambda s, m: None)
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    resumed = Trainer(tiny_model_cfg, tiny_task_cfg, cfg, [0])
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    rows = {}
    resumed.run(on_eval=lambda s, m: rows.__setitem__(s, m))
    assert {s: "heldout_pairs/loss" in m for s, m in rows.items()} == {s: seen_with[s] for s in rows}


@pytest.mark.parametrize("n, every, batch", [(2000, 500, 32), (3200, 320, 32), (200, 48, 20)])
def test_evaluations_fall_where_the_config_says(tiny_model_cfg, tiny_task_cfg, n, every, batch):
    """The grid the page and --dry-run state (TrainConfig.evaluation_points) is the one the trainer follows."""
    cfg = TrainConfig(n_sequences=n, eval_every=every, batch_size=batch, eval_size=8)
    assert list(_collect(tiny_model_cfg, tiny_task_cfg, cfg, [0])) == cfg.evaluation_points()


def test_a_run_gives_bit_identical_numbers_in_any_pack():
    """The optimiser updates each run's slice on its own (clamp.training.optimizer): with one fused update over the
    packed tensors, a run's five unembedding biases were the kernel's scalar remainder alone and its vector body in
    a pack, and packed runs drifted from their single runs (first at step 45 on the quickstart's shape)."""
    model = ModelConfig(n_layers=2, n_heads=4, d_model=32)  # the quickstart's shape
    task = FewShotConfig(n_classes=50, d_in=64)
    cfg = TrainConfig(n_sequences=3200, eval_every=800, eval_size=32, lr=1e-3)
    alone = {s: _collect(model, task, cfg, [s]) for s in range(4)}
    for pack in ([0, 1, 2, 3], [2, 0, 3], [1, 3]):
        got = _collect(model, task, cfg, pack)
        for r, s in enumerate(pack):
            for seen in alone[s]:
                for name, v in alone[s][seen].items():
                    assert torch.equal(got[seen][name][r], v[0]), (pack, s, seen, name)
