"""Head scores and losses on hand-built inputs with known answers."""

from __future__ import annotations

import math

import torch

from clamp.tasks.measures import induction_strength, loss_and_accuracy, prefix_matching_score, prev_token_score
from clamp.tasks import IGNORE


def perfect_prev_token(T: int) -> torch.Tensor:
    p = torch.zeros(T, T)
    p[0, 0] = 1
    for i in range(1, T):
        p[i, i - 1] = 1
    return p


def uniform_causal(T: int) -> torch.Tensor:
    p = torch.tril(torch.ones(T, T))
    return p / p.sum(-1, keepdim=True)


def test_prev_token_score_perfect_is_one_uniform_is_low():
    p = perfect_prev_token(5).expand(2, 3, 4, 5, 5).clone()
    before = p.clone()
    assert torch.allclose(prev_token_score(p), torch.ones(2, 4))
    assert torch.equal(p, before)  # never modifies its input
    u = uniform_causal(5).expand(1, 3, 2, 5, 5)
    expected = (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4
    assert torch.allclose(prev_token_score(u), torch.full((1, 2), expected))


def test_induction_strength_perfect_opposite_and_uniform():
    B, T = 4, 5
    correct = torch.tensor([[1, 3, 3, 1]])  # (R=1, B)
    label_pos = torch.tensor([1, 3]).expand(1, B, 2)
    perfect = torch.zeros(1, B, 2, T, T)
    wrong = torch.zeros(1, B, 2, T, T)
    for b in range(B):
        perfect[0, b, :, 4, correct[0, b]] = 1
        wrong[0, b, :, 4, 4 - correct[0, b]] = 1
    before = perfect.clone()
    assert torch.allclose(induction_strength(perfect, 4, correct, label_pos), torch.ones(1, 2))
    assert torch.equal(perfect, before)
    assert torch.allclose(induction_strength(wrong, 4, correct, label_pos), -torch.ones(1, 2))
    u = uniform_causal(T).expand(1, B, 2, T, T)
    assert torch.allclose(induction_strength(u, 4, correct, label_pos), torch.zeros(1, 2))


def test_prefix_matching_score_known_answer():
    half = 3
    T = 2 * half
    p = torch.zeros(1, 1, 2, T, T)
    for j in range(half):
        p[0, 0, 0, half + j, j + 1] = 1  # head 0: perfect induction
        p[0, 0, 1, half + j, half + j] = 1  # head 1: attends to itself
    assert torch.allclose(prefix_matching_score(p, half), torch.tensor([[1.0, 0.0]]))


def test_loss_and_accuracy_ignore_untargeted_positions():
    logits = torch.zeros(2, 1, 3, 4)
    logits[0, 0, 2, 1] = 100.0  # run 0 predicts class 1 confidently at the target position
    targets = torch.full((2, 1, 3), IGNORE)
    targets[:, 0, 2] = 1
    loss, acc = loss_and_accuracy(logits, targets)
    assert loss[0] < 1e-6 and acc[0] == 1
    assert math.isclose(loss[1].item(), math.log(4), rel_tol=1e-6)
