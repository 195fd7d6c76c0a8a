"""The metrics of one evaluation set: the task's own, then the study's user metric functions.

Why this file exists: what an evaluation records is a contract with everything that reads
``metrics.csv`` (phase rules, triggers, the statistics).  The task speaks through one hook,
``eval_metrics(view)``; a user metric function's values are named by :func:`clamp.names.user_metric`
(``f`` for a tensor, ``f/key`` for a dict), and a name the harness reserves or one already
recorded is refused with the function named.  The trainer calls :func:`add_evaluation_metrics`
at every evaluation, and the study's checks call it on a probe evaluation before any training,
so a clash is refused before anything trains.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torch import Tensor

from clamp.errors import ConfigError
from clamp.names import TRAIN_BATCH_LOSS, check_user_metric_name, user_metric


def function_name(fn: Callable) -> str:
    """The name a user metric function records under (its ``__name__``)."""
    return getattr(fn, "__name__", repr(fn))


def where(fn: Callable) -> str:
    """``file:line`` where a function is defined (for messages), or its import path when that is unknown."""
    import inspect

    try:
        _, line = inspect.getsourcelines(fn)
        return f"{inspect.getsourcefile(fn)}:{line}"
    except (OSError, TypeError):
        return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', fn)}"


def add_user_metric(out: dict[str, Tensor], fn: Callable, view: Any) -> None:
    """Call a user metric ``fn(view)`` and add its values to ``out`` (in place).

    ``fn`` returns a ``[R]`` tensor (named ``fn.__name__``) or a dict of them (each key named
    ``<fn.__name__>/<key>``, unless it already starts with that).  A reserved name, a name
    already recorded, or a value of the wrong shape raises :class:`~clamp.errors.ConfigError`
    naming the function.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> def mean_logit(view): return view.logits.mean((1, 2, 3))
        >>> def stats(view): return {"max": view.logits.amax((1, 2, 3))}
        >>> out = {}; view = SimpleNamespace(logits=torch.ones(2, 1, 1, 3))
        >>> add_user_metric(out, mean_logit, view); add_user_metric(out, stats, view)
        >>> sorted(out), out["mean_logit"].tolist()
        (['mean_logit', 'stats/max'], [1.0, 1.0])
    """
    name = function_name(fn)
    try:
        value = fn(view)
    except Exception as e:  # a user function's error, re-raised naming the function and where it is
        raise ConfigError(f"metric function {name!r} ({where(fn)}) raised {type(e).__name__}: {e}. Fix the function "
                          "(it is called with the EvalView of the train evaluation set).") from e
    items = [(user_metric(name, k), v) for k, v in value.items()] if isinstance(value, dict) else [(name, value)]
    R = view.logits.shape[0]
    for key, v in items:
        check_user_metric_name(key, f"metric function {name!r}")
        if key in out:
            raise ConfigError(f"metric function {name!r} records {key!r}, which is already recorded (by the task or "
                              "another metric function); rename the function or the key.")
        if not isinstance(v, Tensor) or tuple(v.shape) != (R,):
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ConfigError(f"metric function {name!r} must return one value per run (a tensor of shape ({R},)) "
                              f"for {key!r}, got {shape}.")
        out[key] = v.detach()


def add_evaluation_metrics(out: dict[str, Tensor], task: Any, view: Any, user: Sequence[Callable] = ()) -> None:
    """Add what one evaluation set records to ``out`` (in place): ``task.eval_metrics(view)``, then, on the
    ``train`` set, each user metric (checked against everything already in ``out``)."""
    out.update(task.eval_metrics(view))
    if view.evaluator == "train":
        for fn in user:
            add_user_metric(out, fn, view)


def pattern_hook_names(model: Any, n_layers: int) -> list[str]:
    """The attention-pattern hook points an evaluation caches (a fused foreign attention has none)."""
    have = set(model.hook_names())
    return [n for n in (f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)) if n in have]


def probe_metric_names(model_cfg: Any, task_cfg: Any, user: Sequence[Callable] = (), eval_size: int = 8) -> list[str]:
    """The names an arm records at an evaluation, from one evaluation of a fresh one-run model on tiny sets.

    It asks the task (``eval_metrics`` on each of its sets) and runs every user metric function, with
    the code the trainer runs (:func:`add_evaluation_metrics`), so a function that raises or records a
    reserved or taken name fails here, before training, naming the function.  ``train_batch/loss``
    (absent at the evaluation at 0) is included; the interventions' ``fired/`` and ``trigger/`` rows
    are not (see :mod:`clamp.names`).

    Example:
        >>> from clamp.model.config import ModelConfig
        >>> from clamp.tasks import FewShotConfig
        >>> names = probe_metric_names(ModelConfig(n_layers=2, n_heads=2, d_model=8), FewShotConfig(n_classes=10, d_in=8))
        >>> "train/loss" in names and "prev_token/L0H1" in names and "train_batch/loss" in names
        True
    """
    import torch

    from clamp.model.foreign import build_model
    from clamp.tasks.base import EvalView

    task = task_cfg.build()
    cfg = model_cfg.resolve(task.dims())
    model = build_model(cfg, [0])
    patterns_of = pattern_hook_names(model, cfg.n_layers)
    pattern_sets = getattr(task, "pattern_evaluators", ("train",))
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for evaluator in task.evaluators:
            batch = task.sample_runs(eval_size, [torch.Generator().manual_seed(0)], evaluator)
            names = patterns_of if evaluator in pattern_sets else ()
            logits, cache = model.run_with_cache(batch, names)
            patterns = {layer: cache[n] for layer, n in enumerate(patterns_of)} if names else {}
            add_evaluation_metrics(out, task, EvalView(evaluator, batch, logits, patterns, 0, model), user)
    return sorted(set(out) | {TRAIN_BATCH_LOSS})


__all__ = ["add_evaluation_metrics", "add_user_metric", "function_name", "pattern_hook_names", "probe_metric_names"]
