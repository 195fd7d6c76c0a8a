"""Bursty, Zipfian classification: each evaluation set tests what it claims to."""

from __future__ import annotations

import pytest
import torch

from clamp.errors import ConfigError
from clamp.tasks import BurstyConfig, task_from_dict


def _labels_at_query_class(b):
    """For each sequence: the labels the context gives the query's class (positions of that class)."""
    toks, cls = b.tokens[0], b.meta["query_class"][0]
    return toks, cls


def test_in_context_and_swapped_are_solvable_from_context_only():
    task = BurstyConfig(n_classes=64, n_labels=8, d_in=16, n_novel_classes=16).build()
    for ev in ("in_context", "swapped"):
        b = task.sample(300, torch.Generator().manual_seed(0), ev)
        assert b.meta["in_context"].all()
        items, tokens, target = b.items[0], b.tokens[0], b.targets[0, :, -1]
        q = items[:, -1]
        ctx = items[:, 0:-1:2]  # (n, N, d)
        nearest = ((ctx - q[:, None]) ** 2).sum(-1).argmin(1)  # the context item of the query's class (noise 0.1)
        assert torch.equal(tokens[:, 1::2].gather(1, nearest[:, None])[:, 0], target)
    swapped = task.sample(300, torch.Generator().manual_seed(1), "swapped")
    assert (swapped.targets[0, :, -1] != task.labels[swapped.meta["query_class"][0]]).float().mean() > 0.5
    novel = task.sample(50, torch.Generator().manual_seed(2), "in_context")
    assert (novel.meta["query_class"] >= 64).all()


def test_in_weights_has_no_query_class_in_context_and_fixed_labels():
    task = BurstyConfig(n_classes=64, n_labels=8, d_in=16, n_novel_classes=16).build()
    b = task.sample(300, torch.Generator().manual_seed(0), "in_weights")
    assert not b.meta["in_context"].any()
    assert torch.equal(b.targets[0, :, -1], task.labels[b.meta["query_class"][0]])


def test_burstiness_and_zipf():
    cfg = BurstyConfig(n_classes=64, n_labels=8, d_in=16, n_novel_classes=16, burstiness=0.0, zipf=1.0)
    task = cfg.build()
    b = task.sample(4000, torch.Generator().manual_seed(0))
    assert b.meta["in_context"].float().mean() < 0.5  # only chance co-occurrence without bursts
    counts = torch.bincount(b.meta["query_class"][0], minlength=64).float()
    assert counts[0] > 5 * counts[32]  # Zipf(1): class 0 ~33x as frequent as class 32
    bursty = BurstyConfig(n_classes=64, n_labels=8, d_in=16, n_novel_classes=16, burstiness=1.0).build()
    assert bursty.sample(500, torch.Generator().manual_seed(0)).meta["in_context"].all()


def test_seeded_per_run_round_trip_and_validation():
    cfg = BurstyConfig(n_classes=64, n_labels=8, d_in=16, n_novel_classes=16)
    task = cfg.build()
    a = task.sample_runs(5, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)], "swapped")
    assert torch.equal(a.items[1:], task.sample(5, torch.Generator().manual_seed(1), "swapped").items)
    assert task_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="multiple of burst"):
        BurstyConfig(n_pairs=6, burst=4)
    assert cfg.default_phase_rule().metric == "in_context/acc"
