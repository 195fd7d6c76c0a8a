"""The Markov-chain ICL task: reference losses with known answers, per-run seeding."""

from __future__ import annotations

import math

import torch

from clamp.tasks import IGNORE, MarkovConfig, task_from_dict
from clamp.tasks.markov import _ce, reference_predictions
from clamp.tasks.base import EvalView
from clamp.tasks.measures import loss_and_accuracy


def test_reference_predictions_count_by_hand():
    uni, bi = reference_predictions(torch.tensor([[0, 1, 0, 1, 1]]), 2, 0.5)
    # after 0 1 0 1 (position 3): unigram counts (2, 2); transitions from state 1: one 1->0
    assert torch.allclose(uni[0, 3], torch.tensor([0.5, 0.5]))
    assert torch.allclose(bi[0, 3], torch.tensor([1.5 / 2.0, 0.5 / 2.0]))
    # position 0: nothing counted for the bigram, the prior only
    assert torch.allclose(bi[0, 0], torch.tensor([0.5, 0.5]))


def test_oracle_loss_is_what_a_model_given_the_true_matrix_reaches():
    task = MarkovConfig(n_states=3, n_ctx=32).build()
    b = task.sample_runs(64, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    P = b.meta["transitions"]
    logits = P.gather(2, b.tokens[..., None].expand(*b.tokens.shape, 3)).log()  # the true next-state law
    loss, _ = loss_and_accuracy(logits, b.targets)
    refs = task.reference_losses(b)
    assert torch.allclose(loss, refs["ref/oracle"], atol=1e-6)
    assert (refs["ref/unigram"] > refs["ref/bigram"]).all() and (refs["ref/bigram"] > refs["ref/oracle"]).all()


def test_bigram_reference_reaches_the_true_matrix_loss_in_long_contexts():
    task = MarkovConfig(n_states=3, n_ctx=1500).build()
    b = task.sample_runs(48, [torch.Generator().manual_seed(3)])
    _, bi = reference_predictions(b.tokens, 3, 1.0)
    P = b.meta["transitions"]
    oracle = P.gather(2, b.tokens[..., None].expand(*b.tokens.shape, 3))
    late = torch.full_like(b.targets, IGNORE)
    late[..., 1000:] = b.targets[..., 1000:]
    gap = (_ce(bi, late) - _ce(oracle, late)).item()
    assert 0 <= gap < 0.01, gap  # the in-context bigram estimate has converged to the true matrix


def test_bigram_progress_zero_at_unigram_one_at_bigram():
    task = MarkovConfig(n_states=3, n_ctx=16).build()
    b = task.sample_runs(32, [torch.Generator().manual_seed(0)])
    uni, bi = reference_predictions(b.tokens, 3, 1.0)
    for probs, want in ((uni, 0.0), (bi, 1.0)):
        m = task.eval_metrics(EvalView("train", b, probs.log(), {}))
        assert math.isclose(m["markov/bigram_progress"].item(), want, abs_tol=1e-5)


def test_seeded_per_run_and_round_trip():
    task = MarkovConfig(n_states=4, n_ctx=12, alpha=0.5).build()
    a = task.sample_runs(5, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    solo = task.sample(5, torch.Generator().manual_seed(1))
    assert torch.equal(a.tokens[1:], solo.tokens) and torch.allclose(a.meta["transitions"][1:], solo.meta["transitions"])
    assert torch.allclose(a.meta["transitions"].sum(-1), torch.ones(1))
    cfg = MarkovConfig(n_states=4, alpha=0.5)
    assert task_from_dict(cfg.to_dict()) == cfg
