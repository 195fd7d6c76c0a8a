"""Multiple-comparison corrections: the four a study file, ``clamp stats --correction`` and scans can name.

Why this file exists: ``Study(correction=...)`` is checked when the study is built (torch-free, before
any statistic is computed) and the statistics apply it (:mod:`clamp.analysis.stats.families`); the
names and the arithmetic live here once.

- ``holm``: family-wise error rate, Holm's step-down (uniformly better than Bonferroni);
- ``bonferroni``: family-wise, every p times the family's size;
- ``bh``: Benjamini–Hochberg false discovery rate (for scans of many components);
- ``none``: uncorrected.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from clamp.errors import ConfigError

Correction = Literal["holm", "bonferroni", "bh", "none"]
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "bh", "none")
CORRECTION_NAMES = {"holm": "Holm", "bonferroni": "Bonferroni", "bh": "Benjamini–Hochberg", "none": "uncorrected"}


def check_correction(correction: str) -> None:
    """A ConfigError naming the four corrections when ``correction`` is not one of them."""
    if correction not in CORRECTIONS:
        raise ConfigError(f"correction={correction!r} is unknown; choose one of {list(CORRECTIONS)} "
                          "(holm: family-wise error; bh: false discovery rate; none: uncorrected).")


def adjust_pvalues(p: ArrayLike, method: Correction = "holm") -> NDArray[np.float64]:
    """Multiple-comparison correction over one family; NaN p-values are left out and stay NaN.

    Holm: sort ascending, multiply the i-th smallest (0-based) by (m − i), running maximum, cap at 1.
    Benjamini–Hochberg: the i-th smallest (1-based) times m / i, running minimum from the top, cap at 1.

    Args:
        p: p-values, shape ``[m]``.
        method: one of :data:`CORRECTIONS`.

    Returns:
        Adjusted p-values in the input order.

    Example:
        >>> adjust_pvalues([0.01, 0.04, 0.03]).round(3).tolist(), adjust_pvalues([0.01, 0.04, 0.03], "bh").round(3).tolist()
        ([0.03, 0.06, 0.06], [0.03, 0.04, 0.04])
    """
    check_correction(method)
    arr = np.array(p, dtype=float).ravel()
    out = arr.copy()
    ok = np.flatnonzero(np.isfinite(arr))
    m = ok.size
    if m == 0 or method == "none":
        return out
    if method == "bonferroni":
        out[ok] = np.minimum(1.0, arr[ok] * m)
        return out
    order = ok[np.argsort(arr[ok], kind="stable")]
    if method == "holm":
        out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * arr[order]))
        return out
    scaled = arr[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out


__all__ = ["CORRECTIONS", "CORRECTION_NAMES", "Correction", "adjust_pvalues", "check_correction"]
