"""Olsson et al.'s measures on hand-built inputs with known answers."""

from __future__ import annotations

import math

import torch

from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import IGNORE
from clamp.tasks.measures import (copying_scores, icl_positions, icl_score, induction_targets, ov_eigen_copying,
                                   per_token_loss, prefix_matching)


def test_per_token_loss_and_icl_score_known_answer():
    # position 0: uniform over 4 classes (ln 4); position 1: the right class with logit +inf-like margin (0 loss)
    logits = torch.zeros(2, 3, 2, 4)
    logits[:, :, 1, 2] = 100.0
    targets = torch.full((2, 3, 2), 2)
    tl = per_token_loss(logits, targets)
    assert torch.allclose(tl[:, 0], torch.full((2,), math.log(4))) and torch.allclose(tl[:, 1], torch.zeros(2), atol=1e-6)
    assert torch.allclose(icl_score(tl, 0, 1), torch.full((2,), -math.log(4)), atol=1e-6)
    # IGNORE targets do not count; a position with none is NaN
    targets[:, :, 1] = IGNORE
    assert torch.isnan(per_token_loss(logits, targets)[:, 1]).all()


def test_icl_positions_scale_olsson():
    assert icl_positions(512) == (49, 499)  # tokens 50 and 500 (1-based)
    e, l = icl_positions(32)
    assert 0 <= e < l <= 31


def test_prefix_matching_perfect_uniform_and_previous_token_heads():
    T = 8
    first = torch.tensor([3, 1, 4, 0])
    tokens = torch.cat([first, first])[None, None]  # [1, 1, 8], a repeat at offset 4
    targets = induction_targets(tokens)
    rows = torch.zeros(1, 1, T, dtype=torch.bool)
    rows[..., 4:7] = True  # second-repeat rows whose target is a copy
    perfect = torch.zeros(1, 1, 1, T, T)
    for i in range(T):
        perfect[0, 0, 0, i, i - 3 if i >= 4 else i] = 1.0  # i -> the token after the earlier occurrence
    prev = torch.zeros(1, 1, 1, T, T)
    for i in range(T):
        prev[0, 0, 0, i, max(i - 1, 0)] = 1.0
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    pats = torch.cat([perfect, prev, uniform[None, None, None]], dim=2)  # 3 heads
    s = prefix_matching(pats, targets, rows)[0]
    assert s[0] == 1.0 and s[1] == 0.0
    expected_uniform = sum(1.0 / (i + 1) for i in range(4, 7)) / 3
    assert math.isclose(s[2].item(), expected_uniform, rel_tol=1e-6)
    # input left untouched
    assert pats[0, 0, 0].sum() == T


def test_induction_targets_only_earlier_occurrences():
    t = induction_targets(torch.tensor([[[7, 7, 7]]]))[0, 0]
    # row 1 (token 7): earlier 7 at 0 -> target 1 (itself, the token after it); row 2: targets 1 and 2
    assert t.nonzero().tolist() == [[1, 1], [2, 1], [2, 2]]


def test_copying_eigen_score_known_answers():
    eye = torch.eye(4)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # eigenvalues +-i: no copying
    assert ov_eigen_copying(eye).item() == 1.0
    assert ov_eigen_copying(-eye).item() == -1.0
    assert abs(ov_eigen_copying(rot).item()) < 1e-6
    assert ov_eigen_copying(torch.zeros(3, 3)).item() == 0.0


def test_copying_scores_from_weights_match_full_ov_circuit():
    cfg = ModelConfig(n_layers=1, n_heads=2, d_model=8, d_in=0, d_vocab=5, d_out=5, n_ctx=6)
    m = Transformer(cfg, seeds=[0, 1])
    got = copying_scores(m, 0)
    H, dh, D = 2, 4, 8
    for r in range(2):
        E, U = m.token_embed[r], m.unembed.weight[r]
        Wv = m.blocks[0].attn.W_V.weight[r].view(D, H, dh)
        Wo = m.blocks[0].attn.W_O.weight[r].view(H, dh, D)
        for h in range(H):
            full = E @ Wv[:, h] @ Wo[h] @ U  # [V, V]
            assert math.isclose(got[r, h].item(), ov_eigen_copying(full.detach()).item(), abs_tol=1e-4)
    # a head whose OV circuit is a scaled identity on tokens copies perfectly
    with torch.no_grad():
        m.token_embed[0] = torch.eye(5, 8)
        m.unembed.weight[0] = torch.eye(8, 5)
        w = torch.zeros(8, 2, 4)
        w[:4, 0] = torch.eye(4)
        m.blocks[0].attn.W_V.weight[0] = w.view(8, 8)
        o = torch.zeros(2, 4, 8)
        o[0, :, :4] = torch.eye(4)
        m.blocks[0].attn.W_O.weight[0] = o.view(8, 8)
    assert math.isclose(copying_scores(m, 0)[0, 0].item(), 1.0, abs_tol=1e-6)
