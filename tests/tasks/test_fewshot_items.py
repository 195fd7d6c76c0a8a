"""Item statistics options of the few-shot task (clamp.tasks.items): each changes one property, from its own stream."""

from __future__ import annotations

import math

import pytest
import torch

from clamp.errors import ConfigError
from clamp.tasks import FewShotConfig


def _means(**kw) -> torch.Tensor:
    return FewShotConfig(exemplar_noise=0.0, **kw).build().vectors[:, 0]  # (classes, d_in)


def test_defaults_draw_the_items_as_before():
    cfg = FewShotConfig(n_classes=8, d_in=16, n_heldout_classes=2, n_heldout_exemplars=1)
    assert not {"clusters", "cluster_spread", "rank", "nonneg"} & set(cfg.to_dict())
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(10, 16, generator=gen) / 4
    eta = torch.randn(10, 2, 16, generator=gen) / 4
    assert torch.equal(cfg.build().vectors, (mu[:, None] + 0.1 * eta) / math.sqrt(1.01))


def test_options_leave_the_label_sets_and_other_draws_alone():
    base = FewShotConfig().build()
    for kw in (dict(clusters=5), dict(rank=8), dict(nonneg=True)):
        task = FewShotConfig(**kw).build()
        assert torch.equal(task.train_sets, base.train_sets), kw
        assert FewShotConfig(**kw).to_dict().items() >= kw.items()


def test_clusters_make_classes_of_one_cluster_alike():
    mu = torch.nn.functional.normalize(_means(clusters=5, cluster_spread=0.3), dim=1)
    cos = mu @ mu.T
    same = (torch.arange(60)[:, None] % 5 == torch.arange(60)[None] % 5) & ~torch.eye(60, dtype=torch.bool)
    assert float(cos[same].mean()) == pytest.approx(0.7, abs=0.08)
    assert abs(float(cos[~same & ~torch.eye(60, dtype=torch.bool)].mean())) < 0.05


def test_rank_limits_the_class_means_to_a_subspace_keeping_their_norm():
    mu = _means(rank=8)
    assert int(torch.linalg.matrix_rank(mu)) == 8
    assert float(mu.norm(dim=1).mean()) == pytest.approx(1.0, rel=0.1)


def test_nonneg_items_are_the_absolute_values():
    v, ref = FewShotConfig(nonneg=True).build().vectors, FewShotConfig().build().vectors
    assert (v >= 0).all() and torch.equal(v, ref.abs())


@pytest.mark.parametrize("kw, field", [(dict(clusters=-1), "clusters"), (dict(clusters=51), "clusters"),
                                       (dict(cluster_spread=0.0), "cluster_spread"), (dict(rank=0), "rank"),
                                       (dict(rank=513), "rank")])
def test_bad_item_options_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        FewShotConfig(**kw)
