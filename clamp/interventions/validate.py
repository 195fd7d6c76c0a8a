"""Validation of an arm's interventions against a model and task, before anything trains.

Why this file exists: an intervention that names a hook that does not exist,
a head out of range, a window that never opens, a value of the wrong shape --
or one that changes nothing at all -- would otherwise fail late (mid-run) or,
worse, do nothing silently.  This is the driver: for each intervention it
checks the name and windows, asks the kind to check itself against a
:class:`~clamp.interventions.checks.Probe` (:meth:`Intervention.check`), and
then applies it *alone* to the probe batch and rejects it if its site did not
change (the kind says why: :meth:`Intervention.noop_reason`).  Every problem
found is reported in one :class:`ConfigError` naming the intervention and the fix.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

from clamp.errors import ConfigError
from clamp.names import fired as fired_name
from clamp.interventions.checks import Probe
from clamp.interventions.spec import Intervention, Window
from clamp.interventions.registry import intervention_from_dict
from clamp.interventions.when import is_triggered
from clamp.interventions.static import check_name, check_windows
from clamp.model.config import ModelConfig


def edited_sites(iv: Intervention, probe: Probe) -> list[str]:
    """The hook points ``iv`` edits on the probe's model, in forward order."""
    compiled = iv.compile(probe.model, probe.task)
    order = {n: i for i, n in enumerate(probe.names)}
    return sorted({op.site for op in compiled.ops if op.edits}, key=lambda s: order.get(s, -1))


def check_changes(iv: Intervention, probe: Probe) -> str | None:
    """Apply ``iv`` alone to the probe batch; None if it changed its site, else the problem in words.

    It runs at the start of its first window, as a training step and, if that
    changed nothing, as an evaluation (a function may edit only one of them).
    """
    from clamp.interventions.apply import Applier  # imports nnsight only for an nnsight intervention

    if any(is_triggered(w) for w in iv.windows):  # probe it as if its event had fired at 0
        iv = dataclasses.replace(iv, windows=(Window(),))
    seen = min(w.start for w in iv.windows)
    iv = iv.for_probe()
    try:
        compiled = iv.compile(probe.model, probe.task)
        applier = Applier(probe.model, [iv], probe.task, backend="nnsight" if compiled.needs_nnsight else "hooks")
        fired = 0.0
        with torch.no_grad():
            for train in (True, False):
                applier.forward(probe.batch, seen, (), train)
                fired = float(applier.firing_metrics()[fired_name(iv.name)][0])
                if fired:
                    break
        applier.unwrap()
    except ConfigError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - report the failure, naming the intervention
        return f"applying it to a probe batch failed: {type(e).__name__}: {e}"
    if fired:
        return None
    sites = ", ".join(edited_sites(iv, probe)) or "no hook point"
    return (f"applied alone to a probe batch ({probe.batch.size} sequences of the arm's task, a freshly initialised "
            f"model), it leaves {sites} unchanged: {iv.noop_reason(probe)}; an intervention that changes nothing is "
            "refused: fix it or remove it")


def validate_interventions(interventions: Sequence[Intervention | dict], model_cfg: ModelConfig, task: Any,
                           n_sequences: int | None, *, probe_changes: bool = True) -> None:
    """Check an arm's interventions against the (resolved) model config and built task.

    Raises one :class:`ConfigError` listing every problem, each naming the
    intervention and the fix; returns None if all is well.  ``n_sequences``
    None skips the check that every window opens before the run ends;
    ``probe_changes`` False skips applying each one to the probe batch.

    Example:
        >>> from clamp.tasks import FewShotConfig
        >>> from clamp.interventions import perfect_copy
        >>> task = FewShotConfig(n_classes=10, d_in=8).build()
        >>> cfg = ModelConfig(n_layers=1, n_heads=2, d_model=8).resolve(task.dims())
        >>> try:
        ...     validate_interventions([perfect_copy()], cfg, task, 1000)
        ... except ConfigError as e:
        ...     print(str(e).splitlines()[1].split(":")[0])
          - 'perfect_copy_L1H0' (perfect_copy)
    """
    ivs = [intervention_from_dict(iv) if isinstance(iv, dict) else iv for iv in interventions]
    probe = Probe(model_cfg, task)
    problems: list[str] = []
    seen_names: set[str] = set()
    for iv in ivs:
        errs: list[str] = []
        if not isinstance(iv, Intervention):
            problems.append(f"{iv!r} is not an Intervention; build one from clamp.interventions")
            continue
        check_name(iv, seen_names, errs)
        check_windows(iv, n_sequences, errs)
        try:
            errs += iv.check(probe)
        except Exception as e:  # noqa: BLE001 - a user kind's check failing is reported like a problem
            errs.append(f"its check() raised {type(e).__name__}: {e}")
        if not errs and probe_changes:
            problem = check_changes(iv, probe)
            if problem:
                errs.append(problem)
        kind = iv.kind or type(iv).__qualname__
        problems += [f"{iv.name!r} ({kind}): {e}" for e in errs]
    if problems:
        raise ConfigError("invalid interventions:\n" + "\n".join(f"  - {p}" for p in problems))


__all__ = ["validate_interventions", "check_changes", "edited_sites"]
