"""Figures, one home: how a plot is saved, which colour and line style an arm gets, and the axes every figure shares.

Why this file exists: the report, the statistics plots and the post-hoc plots
all write PNG + SVG pairs, colour arms and label the x axis in sequences seen.
Done in three places they drifted (three savers, two palettes); done here an
arm has the same colour in every figure of a study, and every figure is written
the same safe way (temporary file, then :func:`os.replace`, so a killed process
never leaves half a PNG behind the report).

Matplotlib is imported lazily (inside the functions), so importing this module is cheap.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

# Line styles of the arms other than the control (which alone is solid and drawn on top: see
# arm_styles), so two arms whose curves overlap stay distinguishable.
_DASHES = ("--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)))


def arm_colours(arms: Sequence[str]) -> dict[str, Any]:
    """One colour per arm, in the study's arm order (tab10), the same in every figure of a study.

    Example:
        >>> c = arm_colours(["control", "clamp"])
        >>> c["control"] != c["clamp"]
        True
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {a: cmap(i % 10) for i, a in enumerate(arms)}


def arm_styles(arms: Sequence[str], control: str | None = None) -> dict[str, dict]:
    """Plot keywords per arm: its colour (:func:`arm_colours`), a line style, and a z-order.

    The control (or, without one, the first arm) is the only solid line, thicker
    and drawn above the other arms, so it stays visible when arms overlap; the
    other arms cycle through four dashed styles.

    Example:
        >>> s = arm_styles(["control", "a", "b"], control="control")
        >>> s["control"]["ls"], s["a"]["ls"], s["control"]["zorder"] > s["a"]["zorder"]
        ('-', '--', True)
    """
    colours = arm_colours(arms)
    solid = control if control in arms else (arms[0] if arms else None)  # without a control, the first arm
    out, k = {}, 0
    for a in arms:
        if a == solid:
            out[a] = {"color": colours[a], "ls": "-", "lw": 2.4, "zorder": 5}
        else:
            out[a] = {"color": colours[a], "ls": _DASHES[k % len(_DASHES)], "lw": 1.8, "zorder": 3}
            k += 1
    return out


def sequences_axis(ax: Any, label: str = "sequences seen") -> None:
    """Label the x axis in sequences seen, with compact ticks (20k, 1.5M)."""
    from matplotlib.ticker import FuncFormatter

    def fmt(v: float, _pos: int) -> str:
        for unit, div in (("M", 1e6), ("k", 1e3)):
            if abs(v) >= div:
                return f"{v / div:g}{unit}"
        return f"{v:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.set_xlabel(label)


def save_figure(fig: Any, stem: str | Path, *, dpi: int = 110, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically, close the figure, and return the paths.

    Works for a :class:`matplotlib.figure.Figure` made without pyplot and for a
    pyplot figure (which is also closed, so no figure accumulates).  Matplotlib's
    layout warnings are kept out of the console.

    Args:
        fig: the figure.
        stem: path without extension, e.g. ``results/s/plots/curves_train_loss``.
        dpi: resolution of the PNG.
        formats: extensions to write, PNG first (the report embeds the first).

    Returns:
        The written paths, in the order of ``formats``.

    Example:
        >>> from matplotlib.figure import Figure
        >>> import tempfile; d = tempfile.mkdtemp()
        >>> [p.suffix for p in save_figure(Figure(), Path(d) / "empty")]
        ['.png', '.svg']
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tight_layout / tick-locator chatter, not results
        for ext in formats:
            path = stem.parent / f"{stem.name}.{ext}"
            tmp = stem.parent / f".{stem.name}.{ext}.tmp"
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=ext, metadata=_metadata(ext))
            os.replace(tmp, path)
            paths.append(path)
    plt = sys.modules.get("matplotlib.pyplot")  # only a pyplot figure needs closing; never import pyplot here
    if plt is not None and getattr(fig, "number", None) is not None and plt.fignum_exists(fig.number):
        plt.close(fig)
    return paths


def _metadata(ext: str) -> dict:
    # No creation date or software version in the files: rebuilding a report gives identical bytes.
    if ext == "svg":
        return {"Date": None, "Creator": None}
    if ext == "png":
        return {"Software": None}
    return {}
