"""Class vectors with the statistics of real image features: clustered, low-rank, non-negative.

Why this file exists: Singh et al.'s items are frozen ResNet-18 features of Omniglot
characters, which are non-negative (after a ReLU), of low effective dimension and
clustered by alphabet; clamp's default items are isotropic Gaussian class means.
With the authors' own code on clamp's items the phase change comes ≈2.4x later than
in the paper (docs/science.md §4), so the items are the suspect.  These transforms give
:class:`clamp.tasks.FewShotConfig` options to change one property at a time
(``clusters``/``cluster_spread``, ``rank``, ``nonneg``); each keeps the items' norm
about 1 (before ``item_scale``), so that only the named property changes.

Their random draws (cluster centres, the subspace) come from streams of their own,
seeded from ``vectors_seed`` and a name, so the default items, and every other draw,
are unchanged by them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from clamp.rng import stream


def cluster_means(mu: Tensor, clusters: int, spread: float, seed: int) -> Tensor:
    """Class means around ``clusters`` centres: ``sqrt(1 - spread) * centre[k % clusters] + sqrt(spread) * mu[k]``.

    ``mu`` ``[classes, d]`` has entries N(0, 1/d); so do the centres.  Two classes of one
    cluster then have cosine about ``1 - spread`` (an alphabet's characters), of two
    clusters about 0.  ``clusters == 0`` returns ``mu`` unchanged.

    Example:
        >>> mu = torch.randn(6, 256) / 16
        >>> c = cluster_means(mu, 2, 0.2, seed=0)
        >>> bool(torch.cosine_similarity(c[0], c[2], dim=0) > 0.6)
        True
    """
    if clusters == 0:
        return mu
    n, d = mu.shape
    centres = torch.randn(clusters, d, generator=stream(seed, "fewshot/cluster_centres")) / math.sqrt(d)
    which = torch.arange(n) % clusters
    return math.sqrt(1 - spread) * centres[which] + math.sqrt(spread) * mu


def low_rank_means(mu: Tensor, rank: int | None, seed: int) -> Tensor:
    """Class means projected onto a random ``rank``-dimensional subspace, rescaled to keep their norm.

    Example:
        >>> mu = torch.randn(20, 64) / 8
        >>> low = low_rank_means(mu, 3, seed=0)
        >>> int(torch.linalg.matrix_rank(low))
        3
    """
    if rank is None:
        return mu
    d = mu.shape[1]
    basis, _ = torch.linalg.qr(torch.randn(d, rank, generator=stream(seed, "fewshot/subspace"), dtype=torch.float64))
    return ((mu.double() @ basis) @ basis.T * math.sqrt(d / rank)).to(mu.dtype)


def non_negative(vectors: Tensor, nonneg: bool) -> Tensor:
    """Absolute values (half-normal entries, the same norm) when ``nonneg``, as ReLU features are non-negative."""
    return vectors.abs() if nonneg else vectors
