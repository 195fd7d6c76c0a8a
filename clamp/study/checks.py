"""Checks a study must pass before anything trains: the static part (no torch) and the probe part.

Why this file exists: every mistake that can be found before training must be, with one error
naming the arm, its line in the study file, and the fix.  Two parts:

- **static** (:func:`validate_study` with ``probe=False``, run by ``clamp.load_study`` and
  ``clamp list``; no torch): every config, the model resolved against the task's sizes, the
  train config, each intervention's name, windows, hook name, heads and layer
  (:mod:`clamp.interventions.static`), the heat-map heads and the device;
- **probe** (:func:`probe_study`, run by ``clamp run`` and ``--dry-run``; imports torch, nnsight
  only for an nnsight intervention): each arm's task is built, every intervention checks itself
  and is applied alone to a probe batch (one that changes nothing is refused), the metrics the
  arm records are taken from one probe evaluation -- which also runs every user metric
  function, so one that raises or takes a reserved or recorded name is refused -- every
  trigger (``clamp.When``) must name one of them, and per-seed graft donors must exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from clamp.errors import ConfigError
from clamp.interventions.static import check_static
from clamp.interventions.when import When, is_triggered
from clamp.model.config import ModelConfig
from clamp.names import did_you_mean, is_fired, is_trigger
from clamp.study.design import Arm, Study, StudyError
from clamp.study.keys import task_dims


def _check_heatmap_heads(study: Study, model: Any) -> None:
    for h in study.heatmap_heads:
        layer, head = map(int, h[1:].split("H"))
        if layer >= model.n_layers or head >= model.n_heads:
            raise ConfigError(f"Study.heatmap_heads entry {h!r} is outside the model ({model.n_layers} layers x {model.n_heads} heads).")


def _where(study: Study, arm: Arm, path: str | Path | None) -> str:
    return arm.origin or (str(path) if path else study.name)


def validate_study(study: Study, path: str | Path | None = None, *, probe: bool = True) -> None:
    """Check that every arm can be built: task, resolved model, train config, interventions.

    The static part always runs; the probe part (:func:`probe_study`) with ``probe=True``.
    :func:`clamp.study.load.load_study` runs the static part; ``clamp run`` and ``--dry-run``
    run both before any training.

    Raises:
        StudyError: naming the arm (and its line in the study file), before any training.
    """
    for arm in study.arms:
        try:
            model = arm.model.resolve(task_dims(arm.task))
            study.train_config(arm)
            if arm.interventions:
                check_static(list(arm.interventions), model, study.budget(arm))
            if isinstance(model, ModelConfig):  # a foreign model's sizes are known once it is built (the probe)
                _check_heatmap_heads(study, model)
        except ConfigError as e:
            raise StudyError(f"{_where(study, arm, path)}: arm {arm.name!r}: {e}") from e
    try:
        check_device(study.device, "Study.device")
    except ConfigError as e:
        raise StudyError(f"{study.origin or study.name}: {e}") from None
    if probe:
        probe_study(study, path)


def probe_study(study: Study, path: str | Path | None = None) -> None:
    """The probe part of :func:`validate_study` (see the module docstring).

    Raises:
        StudyError: naming the arm before any training.
    """
    from clamp.interventions.donors import check_donors
    from clamp.interventions.probe import validate_interventions

    for arm in study.arms:
        try:
            task = arm.task.build()
            model = arm.model.resolve(task.dims())
            if arm.interventions:
                validate_interventions(list(arm.interventions), model, task, study.budget(arm))
            if study.metrics or _triggered(arm.interventions) or ":" in str(arm.task.to_dict().get("kind", "")):
                check_trigger_metrics(arm_metric_names(study, arm), arm.interventions)
            if arm.interventions:
                donor_errs = check_donors(arm.interventions, study.seeds)
                if donor_errs:
                    raise ConfigError("missing graft donors:\n" + "\n".join(f"  - {e}" for e in donor_errs))
            _check_heatmap_heads(study, model)
        except ConfigError as e:
            raise StudyError(f"{_where(study, arm, path)}: arm {arm.name!r}: {e}") from e


def _triggered(interventions: Sequence[Any]) -> bool:
    return any(is_triggered(w) for iv in interventions for w in getattr(iv, "windows", ()))


def arm_metric_names(study: Study, arm: Arm) -> list[str]:
    """The metric names ``arm`` records at an evaluation (sorted), from a probe evaluation of its task and
    the study's user metric functions (:func:`clamp.training.evaluation.probe_metric_names`).

    A user metric function that raises is reported naming the function and the exception.
    """
    from clamp.training.evaluation import probe_metric_names

    try:
        return probe_metric_names(arm.model, arm.task, study.metrics)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"a probe evaluation of this arm failed: {type(e).__name__}: {e} (the task's eval_metrics "
                          f"or one of Study.metrics {[getattr(f, '__name__', f) for f in study.metrics]}); "
                          "fix it before training.") from e


def check_trigger_metrics(names: Sequence[str], interventions: Sequence[Any]) -> None:
    """Refuse every trigger (``clamp.When``) on a metric the arm does not record, listing those it does.

    A trigger on a misspelt metric would never fire, and the arm would silently train as its
    control.  ``fired/...``, ``interventions/fired`` and ``trigger/...`` rows are computed after the
    triggers are checked at an evaluation, so a trigger could never see them: not offered.
    """
    whens = [(iv.name, end, getattr(w, end)) for iv in interventions for w in iv.windows if is_triggered(w)
             for end in ("start", "stop") if isinstance(getattr(w, end), When)]
    if not whens:
        return
    names = [n for n in names if not is_fired(n) and not is_trigger(n)]
    bad = []
    for iv_name, end, when in whens:
        if when.metric not in names:
            hint = did_you_mean(when.metric, names)
            bad.append(f"{iv_name!r}: its window {end} triggers on {when.metric!r}, which this arm does not record{hint}")
    if bad:
        raise ConfigError("triggers on unknown metrics:\n" + "\n".join(f"  - {b}" for b in bad)
                          + f"\n  the metrics this arm records at every evaluation: {', '.join(names)}")


def check_device(device: str, where: str = "device") -> None:
    """Reject a device this machine's torch cannot use (``"cuda"`` on a CPU-only build, a missing GPU index).

    Example:
        >>> check_device("cpu")
    """
    if device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"{where}={device!r} is not a device name ({e}); use 'cpu', 'cuda' or 'cuda:0'.") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch" if torch.version.cuda is None else "no visible CUDA device"
            raise ConfigError(f"{where}={device!r} but this machine has {build}; use device='cpu', or install a "
                              "CUDA build of torch on a machine with a GPU.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{where}={device!r} but only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1}); "
                              "pick one of those.")
        return
    if dev.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return
    raise ConfigError(f"{where}={device!r} is not available here; use 'cpu' or 'cuda'.")



__all__ = ["arm_metric_names", "check_device", "check_trigger_metrics", "probe_study", "validate_study"]
