"""Which comparisons are corrected together, how, and what a family of that size can reach.

Why this file exists: a p-value means something only with the family it was corrected in.  A study's
comparisons fall into families, each corrected on its own, and every p names its family in
``stats.csv``, ``stats.md`` and the page:

- ``primary``: the pre-planned comparisons, by default every arm against the control (a study file
  may name them instead: ``Study(primary_comparisons=[...])``);
- ``secondary``: every other comparison (the study's extra pairs, control comparisons left out of a
  named primary family);
- ``scan <prefix>``: the components of one scan (:func:`clamp.scan`) against the control, a family of
  their own (their ranking and heatmap use the same p-values).

Corrections (the same four everywhere: study file, ``clamp stats --correction`` and scans):
``holm`` (family-wise error, step-down), ``bonferroni``, ``bh`` (Benjamini–Hochberg false discovery
rate) and ``none``.  With a few runs per arm the exact test's floor times the family's correction can
exceed alpha whatever the data: :func:`reachable` says how far each comparison can go, and
:func:`seeds_advice` how many more seeds would let it reach alpha.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from clamp.analysis.stats.rank import min_rank_p
from clamp.corrections import CORRECTION_NAMES, CORRECTIONS, Correction, adjust_pvalues, check_correction

PRIMARY, SECONDARY, SCAN = "primary", "secondary", "scan"


def family_label(family: str, correction: str, size: int) -> str:
    """How a p-value's family is named in sentences and on the page.

    Example:
        >>> family_label("primary", "holm", 5), family_label("scan ko", "bh", 12), family_label("secondary", "none", 4)
        ('Holm over the primary family of 5', 'Benjamini–Hochberg over the scan ko family of 12', 'uncorrected, secondary family of 4')
    """
    if correction == "none":
        return f"uncorrected, {family} family of {size}"
    return f"{CORRECTION_NAMES.get(correction, correction)} over the {family} family of {size}"


def reachable(floors: Sequence[float], correction: Correction) -> NDArray[np.float64]:
    """The smallest adjusted p each comparison of a family can reach: the correction applied with every
    comparison at its own floor (the exact test's smallest p; adjusted p-values only grow with any p).

    Example:
        >>> reachable([0.0079] * 9, "holm").round(3).tolist()[:2], reachable([0.0079] * 5, "holm").round(3).tolist()[:2]
        ([0.071, 0.071], [0.04, 0.04])
    """
    return adjust_pvalues(np.asarray(floors, dtype=float), correction)


def seeds_advice(sizes: Sequence[tuple[int, int]], correction: Correction, alpha: float, *,
                 reference: str | None = None, shared_reference: bool = True, limit: int = 20) -> str:
    """The fewest extra seeds that would let every comparison of a family reach ``alpha``, in words.

    Two ways are tried, and the cheaper one is given (both when they cost the same): one more seed
    for every arm of the family, k at a time; and, when every comparison shares one reference arm
    (the control), seeds for that arm alone.

    Args:
        sizes: ``(n_arm, n_reference)`` of each comparison of the family.
        correction: the family's correction.
        alpha: the level.
        reference: the shared reference arm's name (for the words).
        shared_reference: whether every comparison has that reference.
        limit: give up beyond this many extra seeds per arm.

    Example:
        >>> seeds_advice([(5, 5)] * 9, "holm", 0.05, reference="control")
        '1 more seed for control (5 → 6) would let every comparison reach alpha'
        >>> seeds_advice([(3, 3)], "holm", 0.05, reference="control")
        '2 more seeds for control (3 → 5) or 1 more seed for every arm (3 → 4) would let every comparison reach alpha'
    """
    def ok(pairs: Sequence[tuple[int, int]]) -> bool:
        return bool(np.all(reachable([min_rank_p(a, b) for a, b in pairs], correction) <= alpha))

    if ok(sizes):
        return ""
    every = next((k for k in range(1, limit + 1) if ok([(a + k, b + k) for a, b in sizes])), None)
    ref = next((k for k in range(1, limit + 1) if ok([(a, b + k) for a, b in sizes])), None) \
        if shared_reference and reference else None
    n_arms = len(sizes) + 1 if shared_reference else 2 * len(sizes)
    cost_every = None if every is None else every * n_arms
    parts = []
    lo = min(min(a, b) for a, b in sizes)
    if ref is not None and (cost_every is None or ref <= cost_every):
        nb = sizes[0][1]
        parts.append(f"{ref} more seed{'s' if ref > 1 else ''} for {reference} ({nb} → {nb + ref})")
    if every is not None and (ref is None or cost_every is not None and cost_every <= ref):
        parts.append(f"{every} more seed{'s' if every > 1 else ''} for every arm ({lo} → {lo + every})")
    if not parts:
        return f"more than {limit} more seeds per arm would be needed"
    return " or ".join(parts) + " would let every comparison reach alpha"


def is_scan(family: str) -> bool:
    return family.startswith(SCAN + " ")


__all__ = ["CORRECTIONS", "CORRECTION_NAMES", "Correction", "PRIMARY", "SCAN", "SECONDARY", "adjust_pvalues",
           "check_correction", "family_label", "is_scan", "reachable", "seeds_advice"]  # corrections re-exported

