"""Metric names: the one place that builds and parses the names written to ``metrics.csv``.

Why this file exists: a metric's name is the contract between the stage that records
it (the trainer, a task, the interventions, a user function) and every stage that reads
it (the worker's stop decision, resume, the statistics, the report, a notebook).  Names
built by string formatting in several places drift apart, and a user metric that takes
a name the harness writes itself would be overwritten without a word.  So the schemes
live here, with the prefixes the harness reserves for itself.

Schemes (``R`` runs per row, one value each):

- ``{evaluator}/loss``, ``{evaluator}/acc``: every task, per evaluation set (``train`` is
  the training distribution);
- ``train_batch/loss``: mean training-batch loss since the previous evaluation;
- ``{family}/L{layer}H{head}``: a per-head score (``prev_token``, ``induction``,
  ``prefix_match``, ``copying``);
- ``fired/{intervention}``, ``interventions/fired``: how many times each intervention
  changed its site, and how many distinct interventions did, since the last evaluation;
- ``trigger/{intervention}/{start|stop}`` (``trigger/{intervention}/w{k}/{end}`` when an
  intervention has several triggered windows): 0 until a closed-loop window's event was
  detected, 1 from then on;
- a user metric function ``f`` records ``f`` (a tensor) or ``f/{key}`` (a dict; a key that
  already starts with ``f/`` is kept as it is).

Example:
    >>> head("prev_token", 0, 1), parse_head("induction/L1H3"), trigger("ko", "start")
    ('prev_token/L0H1', ('induction', 1, 3), 'trigger/ko/start')
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable

from clamp.errors import ConfigError

TRAIN_BATCH_LOSS = "train_batch/loss"
FIRED_TOTAL = "interventions/fired"
FIRED_PREFIX = "fired/"
TRIGGER_PREFIX = "trigger/"

#: the names and prefixes the harness writes itself; no user metric may take them.
RESERVED_PREFIXES: tuple[str, ...] = ("train_batch/", FIRED_PREFIX, "interventions/", TRIGGER_PREFIX)

_HEAD = re.compile(r"([^/\s]+)/L(\d+)H(\d+)")


def evaluator_metric(evaluator: str, what: str) -> str:
    """``{evaluator}/{what}``, e.g. ``train/loss``."""
    return f"{evaluator}/{what}"


def head(family: str, layer: int, h: int) -> str:
    """A per-head score's name, e.g. ``induction/L1H0``."""
    return f"{family}/L{layer}H{h}"


def parse_head(name: str) -> tuple[str, int, int] | None:
    """``(family, layer, head)`` of a per-head score's name; None for any other name.

    Example:
        >>> parse_head("prefix_match/L0H2"), parse_head("train/loss")
        (('prefix_match', 0, 2), None)
    """
    m = _HEAD.fullmatch(name)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def head_tag(layer: int, h: int) -> str:
    """``L{layer}H{h}``, how a head is written in names and in ``Study.heatmap_heads``."""
    return f"L{layer}H{h}"


def fired(intervention: str) -> str:
    """``fired/{intervention}``."""
    return f"{FIRED_PREFIX}{intervention}"


def trigger_prefix(intervention: str, window: int | None = None) -> str:
    """``trigger/{intervention}``, or ``trigger/{intervention}/w{window}`` for one of several triggered windows."""
    return f"{TRIGGER_PREFIX}{intervention}" + ("" if window is None else f"/w{window}")


def trigger(intervention: str, end: str, window: int | None = None) -> str:
    """A closed-loop window's event row: ``trigger/{intervention}[/w{k}]/{start|stop}``."""
    return f"{trigger_prefix(intervention, window)}/{end}"


def is_trigger(name: str) -> bool:
    return name.startswith(TRIGGER_PREFIX)


def is_fired(name: str) -> bool:
    return name.startswith(FIRED_PREFIX) or name == FIRED_TOTAL


def is_reserved(name: str) -> bool:
    """Whether ``name`` is (or lies under) a name the harness writes itself.

    Example:
        >>> is_reserved("interventions/fired"), is_reserved("trigger/x"), is_reserved("my/score")
        (True, True, False)
    """
    return name.startswith(RESERVED_PREFIXES)


def user_metric(function: str, key: str | None = None) -> str:
    """The name a user metric function's value is recorded under.

    A function returning a tensor records its own name; one returning a dict records each
    key under the function's name (``function/key``), unless the key already starts with it.

    Example:
        >>> user_metric("icl"), user_metric("olsson", "icl_score"), user_metric("olsson", "olsson/icl")
        ('icl', 'olsson/icl_score', 'olsson/icl')
    """
    if key is None:
        return function
    return key if key.startswith(f"{function}/") else f"{function}/{key}"


def check_user_metric_name(name: str, where: str) -> None:
    """Refuse a user metric name that is empty or reserved, naming ``where`` it came from and the fix."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: a metric needs a non-empty name.")
    if is_reserved(name):
        raise ConfigError(f"{where}: the metric name {name!r} is reserved (clamp records {', '.join(RESERVED_PREFIXES)}"
                          " itself and would overwrite it); rename the function or the key.")


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 3, cutoff: float = 0.5) -> str:
    """``" (did you mean 'a', 'b'?)"`` for the choices closest to a misspelt ``name``; "" when none is close.

    Example:
        >>> did_you_mean("train/los", ["train/loss", "train/acc", "induction/L1H0"])
        " (did you mean 'train/loss', 'train/acc'?)"
        >>> did_you_mean("zzz", ["train/loss"])
        ''
    """
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


__all__ = ["did_you_mean", "FIRED_PREFIX", "FIRED_TOTAL", "RESERVED_PREFIXES", "TRAIN_BATCH_LOSS", "TRIGGER_PREFIX",
           "check_user_metric_name", "evaluator_metric", "fired", "head", "head_tag", "is_fired", "is_reserved",
           "is_trigger", "parse_head", "trigger", "trigger_prefix", "user_metric"]
