"""The checks of an arm's interventions that need no model: names, windows, hook names, heads, layers.

Why this file exists: loading a study (``clamp list``, a rejected study file, the first step of
``clamp run``) must answer in about a second, so it cannot import torch or build a probe model.  What
can be told from the configs alone is checked here, with the same messages as the full check
(:mod:`clamp.interventions.probe`, which ``clamp run`` and ``--dry-run`` still run on a probe batch
before any training): a duplicate or malformed name, a window that never opens, a hook name the model
does not have, a head or layer out of range.  Whatever passes here is checked again there; a kind's own
``check()`` and the no-op probe run only there.
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

from clamp.errors import ConfigError
from clamp.interventions.spec import Intervention
from clamp.interventions.registry import intervention_from_dict
from clamp.interventions.when import is_triggered
from clamp.model.config import ModelConfig, head_axis, hook_names


def check_windows(iv: Intervention, n_sequences: int | None, errs: list[str]) -> None:
    """A window list that is empty, backwards, or opens after the run ends."""
    if not iv.windows:
        errs.append("windows is empty, so it never applies; give at least one Window (Window() = always)")
    for w in iv.windows:
        if is_triggered(w):  # an event window (clamp.When): checked against the arm's metrics by clamp.study.checks
            if not type(iv).triggerable:
                errs.append(f"a {type(iv).__name__} cannot have a triggered window (clamp.When): its edit cannot be "
                            "limited to the runs of a pack whose event fired. Fix: give it fixed windows "
                            "(Window(start=..., stop=...)), or write the edit as a Clamp/FunctionClamp, which can")
            continue
        if not isinstance(w.start, int) or w.start < 0:
            errs.append(f"window start={w.start} must be a non-negative integer (sequences seen)")
        elif w.stop is not None and (not isinstance(w.stop, int) or w.start >= w.stop):
            errs.append(f"window start={w.start} >= stop={w.stop}; the window is empty: make stop > start (or None for 'to the end')")
        elif n_sequences is not None and w.start >= n_sequences:
            errs.append(f"window starts at {w.start} sequences, at or after the run ends ({n_sequences}); "
                        "start it earlier or lengthen TrainConfig.n_sequences")


def check_name(iv: Intervention, seen_names: set[str], errs: list[str]) -> None:
    """A unique name without spaces or '/' (it becomes a metric name)."""
    if iv.name in seen_names:
        errs.append("another intervention of this arm has the same name; give each a unique name=")
    if not iv.name or any(c.isspace() for c in iv.name) or "/" in iv.name:
        errs.append("name must be non-empty, without spaces or '/' (it becomes a metric name)")
    seen_names.add(iv.name)


def suggest(site: str, names: list[str]) -> str:
    close = difflib.get_close_matches(site, names, n=3, cutoff=0.4)
    return f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"valid names are {names}"


def heads_out_of_range(heads: Sequence[Any], H: int, what: str = "head index") -> str | None:
    """The problem with head indices outside ``0..H-1`` (None if every one is in range)."""
    bad = [h for h in heads if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h < H]
    return f"{what} {bad} out of range: the model has {H} heads per layer (0..{H - 1})" if bad else None


def layer_out_of_range(layer: Any, L: int) -> str | None:
    """The problem with a layer outside ``0..L-1`` (None if it is in range)."""
    if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < L:
        return None
    return (f"layer={layer} is out of range: the model has {L} layer(s) (0..{L - 1}); "
            "pick a layer in range or raise ModelConfig.n_layers")


def _heads_ok(heads: Any, H: int, errs: list[str]) -> None:
    if isinstance(heads, (tuple, list)) and (problem := heads_out_of_range(heads, H)):
        errs.append(problem)


def check_model_fields(iv: Intervention, cfg: ModelConfig, errs: list[str]) -> None:
    """Hook name, heads and layer of a built-in kind, against a built-in model config.

    Reads only the fields every built-in kind names the same way (``site``, ``heads``, ``keep``,
    ``head``, ``layer``); a user kind without them is checked only by the probe.
    """
    names = hook_names(cfg)
    site = getattr(iv, "site", None)
    if isinstance(site, str) and site not in names:
        errs.append(f"unknown hook name {site!r}; {suggest(site, names)}")
        return
    H, L = cfg.n_heads, cfg.n_layers
    layer = getattr(iv, "layer", None)
    if isinstance(layer, int) and not isinstance(layer, bool) and (problem := layer_out_of_range(layer, L)):
        errs.append(problem)
    if isinstance(site, str) and head_axis(site) is None:
        return  # the probe's check says what is wrong with heads on a hook without a head axis
    _heads_ok(getattr(iv, "heads", None), H, errs)
    _heads_ok(getattr(iv, "keep", None), H, errs)
    head = getattr(iv, "head", None)
    if isinstance(head, int) and not isinstance(head, bool):
        _heads_ok((head,), H, errs)


def check_static(interventions: Sequence[Intervention | dict], model_cfg: Any, n_sequences: int | None) -> None:
    """Raise one :class:`ConfigError` listing every problem the configs alone show; None if there is none.

    ``model_cfg`` is the resolved model config; hook names, heads and layers are checked only for the
    built-in :class:`ModelConfig` (a foreign model's names are known once it is built).

    Example:
        >>> from clamp.interventions import Knockout
        >>> try:
        ...     check_static([Knockout(site="blocks.0.hook_zz")], ModelConfig(n_layers=1, n_heads=2, d_model=8), 100)
        ... except ConfigError as e:
        ...     print("unknown hook name" in str(e))
        True
    """
    problems: list[str] = []
    seen: set[str] = set()
    for iv in interventions:
        if isinstance(iv, dict):
            iv = intervention_from_dict(iv)
        if not isinstance(iv, Intervention):
            problems.append(f"{iv!r} is not an Intervention; build one from clamp.interventions")
            continue
        errs: list[str] = []
        check_name(iv, seen, errs)
        check_windows(iv, n_sequences, errs)
        if isinstance(model_cfg, ModelConfig):
            check_model_fields(iv, model_cfg, errs)
        kind = iv.kind or type(iv).__qualname__
        problems += [f"{iv.name!r} ({kind}): {e}" for e in errs]
    if problems:
        raise ConfigError("invalid interventions:\n" + "\n".join(f"  - {p}" for p in problems))


__all__ = ["check_model_fields", "check_name", "check_static", "check_windows", "heads_out_of_range",
           "layer_out_of_range", "suggest"]
