"""Task generators produce the documented structure."""

from __future__ import annotations

import pytest
import torch

from clamp.errors import ConfigError
from clamp.tasks import IGNORE, FewShotConfig, RepeatConfig, task_from_dict


def _sample(task, evaluator="train", n=400, seed=0):
    return task.sample(n, torch.Generator().manual_seed(seed), evaluator)


@pytest.mark.parametrize("evaluator", ["train", "heldout_pairs", "heldout_classes", "heldout_exemplars"])
def test_fewshot_structure(evaluator):
    cfg = FewShotConfig(n_classes=12, d_in=16, n_heldout_classes=4, n_heldout_exemplars=3, exemplar_noise=0.3)
    task = cfg.build()
    b = _sample(task, evaluator)
    T = 5
    assert b.tokens.shape == (1, 400, T) and b.items.shape == (1, 400, T, 16)
    assert b.item_mask[0, 0].tolist() == [True, False, True, False, True]
    labels = b.tokens[0][:, [1, 3]]
    assert (labels[:, 0] != labels[:, 1]).all()
    allowed = task.heldout_sets if evaluator == "heldout_pairs" else task.train_sets
    allowed_sets = {tuple(sorted(s)) for s in allowed.tolist()}
    assert all(tuple(sorted(s)) in allowed_sets for s in labels.tolist())
    # the query matches exactly one context pair (its class), and its target is that pair's label
    correct = b.meta["correct_pos"][0]
    target = b.targets[0, :, T - 1]
    assert (b.tokens[0].gather(1, correct[:, None])[:, 0] == target).all()
    assert (b.targets[0, :, : T - 1] == IGNORE).all()
    # query class appears once in context, and the distractor is another class
    qc = b.meta["query_class"][0]
    vecs = task.vectors
    ctx_items = b.items[0][:, [0, 2]]
    for i in range(50):
        sims = torch.stack([(ctx_items[i, j] @ vecs[qc[i]].T).max() for j in range(2)])
        assert sims.argmax() == (correct[i] - 1) // 2
    # classes come from the right pool
    if evaluator == "heldout_classes":
        assert (qc >= cfg.n_classes).all()
    else:
        assert (qc < cfg.n_classes).all()
    # both orders and both query slots occur
    assert set(correct.tolist()) == {1, 3}


def test_heldout_label_pairs_never_in_training():
    task = FewShotConfig(n_classes=10, d_in=8).build()
    train = {tuple(s) for s in task.train_sets.tolist()}
    held = {tuple(s) for s in task.heldout_sets.tolist()}
    assert len(train) == 8 and len(held) == 2 and not (train & held)
    seen = {tuple(sorted(s)) for s in _sample(task, n=2000).tokens[0][:, [1, 3]].tolist()}
    assert seen == train


def test_training_query_is_identical_to_its_context_item_with_one_exemplar():
    task = FewShotConfig(n_classes=10, d_in=8, n_exemplars=1).build()
    b = _sample(task)
    correct_item = b.items[0].gather(1, (b.meta["correct_pos"][0] - 1)[:, None, None].expand(-1, 1, 8))[:, 0]
    assert torch.equal(correct_item, b.items[0, :, 4])


def test_heldout_exemplars_differ_from_training_exemplars():
    task = FewShotConfig(n_classes=10, d_in=8, n_exemplars=1, n_heldout_exemplars=2, exemplar_noise=0.5).build()
    b = _sample(task, "heldout_exemplars")
    train_vecs = task.vectors[:, 0]
    q = b.items[0, :, 4]
    assert not any(torch.isclose(q[i], train_vecs).all(-1).any() for i in range(50))


def test_shared_component_correlates_classes():
    plain = FewShotConfig(n_classes=40, d_in=256).build().vectors[:, 0]
    shared = FewShotConfig(n_classes=40, d_in=256, shared=0.5).build().vectors[:, 0]

    def mean_cos(v):
        v = v / v.norm(dim=-1, keepdim=True)
        c = v @ v.T
        return (c.sum() - c.diagonal().sum()) / (c.numel() - len(c))

    assert abs(mean_cos(plain)) < 0.05 and mean_cos(shared) > 0.2


def test_sampling_is_deterministic_per_generator_seed():
    task = FewShotConfig(n_classes=10, d_in=8).build()
    a, b, c = _sample(task, seed=1), _sample(task, seed=1), _sample(task, seed=2)
    assert torch.equal(a.items, b.items) and torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)


def test_repeat_task_structure():
    task = RepeatConfig(vocab=20, half=6).build()
    b = _sample(task, n=10)
    assert torch.equal(b.tokens[0, :, :6], b.tokens[0, :, 6:])
    assert torch.equal(b.targets[0, :, :-1], b.tokens[0, :, 1:]) and (b.targets[0, :, -1] == IGNORE).all()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_labels=1), "n_labels"),
        (dict(n_pairs=0), "n_pairs"),
        (dict(n_pairs=6), "n_pairs"),
        (dict(n_classes=2, n_pairs=3, n_labels=5), "n_pairs"),
    ],
)
def test_bad_task_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        FewShotConfig(**kwargs)


def test_task_config_round_trip():
    cfg = FewShotConfig(n_classes=7, shared=0.3)
    assert task_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown task kind"):
        task_from_dict({"kind": "omniglot"})
    with pytest.raises(ConfigError, match="unknown keys"):
        task_from_dict({"kind": "fewshot", "n_class": 3})


def test_sample_runs_equals_separate_single_run_samples():
    task = FewShotConfig(n_classes=10, d_in=8, n_heldout_exemplars=2).build()
    for ev in task.evaluators:
        packed = task.sample_runs(7, [torch.Generator().manual_seed(s) for s in (3, 4)], ev)
        for r, s in enumerate((3, 4)):
            single = task.sample(7, torch.Generator().manual_seed(s), ev)
            run = packed.run(r)
            assert torch.equal(run.items, single.items) and torch.equal(run.tokens, single.tokens)
            assert torch.equal(run.targets, single.targets)
            assert all(torch.equal(run.meta[k], single.meta[k]) for k in single.meta)


def test_item_scale_scales_vectors_and_keeps_old_keys():
    base = FewShotConfig(n_classes=10, d_in=8).build().vectors
    scaled = FewShotConfig(n_classes=10, d_in=8, item_scale=3.0).build().vectors
    torch.testing.assert_close(scaled, 3.0 * base)
    assert "item_scale" not in FewShotConfig().to_dict()  # default left out: existing run hashes unchanged
    assert task_from_dict(FewShotConfig(item_scale=3.0).to_dict()).item_scale == 3.0
    with pytest.raises(ConfigError, match="item_scale"):
        FewShotConfig(item_scale=0)
