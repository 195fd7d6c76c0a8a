"""Validating an arm's interventions on a probe: each kind checks itself, then each is applied alone.

Why this file exists: an intervention that names a hook that does not exist, a head out of
range, a window that never opens, a value of the wrong shape -- or one that changes nothing at
all -- would otherwise fail late (mid-run) or, worse, do nothing silently.  Every kind validates
itself (:meth:`Intervention.check`) against a :class:`Probe`: a fresh one-run model built from
the arm's resolved config, a few sequences of the arm's task, and the shape of every hook point
from one forward (cheap for the tiny models here).  The checks several kinds share (a hook name,
heads, a layer, a value's shape, a checkpoint) are written once here, on top of the torch-free
ones of :mod:`clamp.interventions.static`.  :func:`validate_interventions` is the driver: names
and windows, each kind's ``check()``, then each intervention applied *alone* to the probe batch
and refused if its site did not change (the kind says why: :meth:`Intervention.noop_reason`).
Every problem found is reported in one :class:`ConfigError` naming the intervention and the fix.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

from clamp.errors import ConfigError
from clamp.interventions.effects import checkpoint_runs, load_packed_weights, position_axis, slice_index
from clamp.interventions.registry import intervention_from_dict
from clamp.interventions.spec import Intervention, Window
from clamp.interventions.static import check_name, check_windows, heads_out_of_range, layer_out_of_range, suggest
from clamp.interventions.when import is_triggered
from clamp.model.config import ModelConfig, head_axis
from clamp.model.foreign import build_model
from clamp.names import fired as fired_name
from clamp.tasks.batch import Batch

PROBE_SEQUENCES = 8  # sequences in the probe batch (a resample ablation needs at least 2)
PROBE_SEED = 104_729  # the probe model's init seed: not a seed a study is likely to train, so a graft of a
#                       fresh model's checkpoint is not mistaken for a no-op


class Probe:
    """Shapes of every hook and a sample batch, from one forward of a fresh one-run model.

    Attributes:
        cfg: the resolved model config.  model: the one-run model.  task: the built task.
        batch: :data:`PROBE_SEQUENCES` sequences of the task (one run).  names: hook names in
        forward order.  shapes: hook name -> activation shape.  T: sequence length.
    """

    def __init__(self, cfg: ModelConfig, task: Any) -> None:
        self.cfg = cfg
        self.task = task
        self.model = build_model(cfg, [PROBE_SEED])  # the built-in Transformer, or a foreign model
        self.batch: Batch = task.sample(PROBE_SEQUENCES, torch.Generator().manual_seed(0))
        self.names = self.model.hook_names()
        with torch.no_grad():
            _, cache = self.model.run_with_cache(self.batch, self.names)
        self.shapes = {n: tuple(v.shape) for n, v in cache.items()}
        self.T = self.batch.tokens.shape[-1]


def check_site(site: str, heads: tuple[int, ...] | None, positions: tuple[int, ...] | None,
               probe: Probe, errs: list[str]) -> bool:
    """A hook name that exists, heads only on a per-head hook, positions in range."""
    if not isinstance(site, str) or site not in probe.shapes:
        why = getattr(probe.model, "missing_site", lambda s: None)(site)  # a foreign model says why (clamp.model.foreign)
        errs.append(why or f"unknown hook name {site!r}; {suggest(str(site), probe.names)}")
        return False
    ok = True
    if heads is not None:
        if head_axis(site) is None:
            errs.append(f"hook {site!r} has no head axis; drop heads= or use a per-head hook (hook_q/k/v/z, hook_attn_scores, hook_pattern)")
            ok = False
        else:
            ok &= check_heads(heads, probe, errs)
    if positions is not None:
        T = probe.shapes[site][position_axis(site)]
        bad = [p for p in positions if not 0 <= p < T]
        if bad or len(set(positions)) != len(positions):
            errs.append(f"positions {list(positions)} must be distinct and in 0..{T - 1}")
            ok = False
    return ok


def check_heads(heads: Sequence[int], probe: Probe, errs: list[str], what: str = "head index") -> bool:
    problem = heads_out_of_range(heads, probe.cfg.n_heads, what)
    if problem:
        errs.append(problem)
        return False
    if len(set(heads)) != len(heads):
        errs.append(f"heads {list(heads)} repeat an index; list each head once")
        return False
    return True


def check_layer(layer: int, probe: Probe, errs: list[str]) -> bool:
    problem = layer_out_of_range(layer, probe.cfg.n_layers)
    if problem:
        errs.append(problem)
        return False
    return True


def check_meta(keys: Sequence[str], probe: Probe, errs: list[str], what: str) -> bool:
    missing = [k for k in keys if k not in probe.batch.meta]
    if missing:
        errs.append(f"{what} needs a task whose batches carry {list(missing)} (the few-shot task); this task does not")
        return False
    return True


def check_choice(value: Any, choices: Sequence[str], field_name: str, errs: list[str]) -> None:
    if value not in choices:
        errs.append(f"{field_name}={value!r} is unknown; choose {', '.join(choices[:-1])} or {choices[-1]}")


def check_value_shape(value: Any, slice_shape: tuple[int, ...], errs: list[str], what: str) -> None:
    try:
        vshape = tuple(torch.as_tensor(value, dtype=torch.float32).shape)
    except (ValueError, TypeError) as e:
        errs.append(f"{what} is not a numeric (nested) list: {e}")
        return
    try:
        ok = tuple(torch.broadcast_shapes(vshape, slice_shape)) == tuple(slice_shape)
    except RuntimeError:
        ok = False
    if not ok:
        errs.append(f"{what} has shape {list(vshape)} but the clamped slice has shape {list(slice_shape)}; give a value that broadcasts to it")


def slice_shape(site: str, heads: tuple | None, positions: tuple | None, probe: Probe) -> tuple[int, ...]:
    """Shape of the selected slice of ``site`` on the probe batch, run and batch axes included."""
    x = torch.empty(probe.shapes[site])
    return tuple(x[slice_index(site, x.dim(), heads, positions)].shape)


def check_checkpoint(path: str, run: int | None, probe: Probe, errs: list[str]) -> None:
    try:
        state = load_packed_weights(path)
    except ConfigError as e:
        errs.append(str(e))
        return
    except Exception as e:  # noqa: BLE001 - any load failure is a config problem
        errs.append(f"cannot load checkpoint {path!r} ({e}); save it with torch.save(model.state_dict(), path)")
        return
    own = probe.model.state_dict()
    if set(own) != set(state) or any(own[k].shape[1:] != state[k].shape[1:] for k in own):
        errs.append(f"checkpoint {path!r} does not fit this model's architecture; graft from a run with the same ModelConfig")
    elif run is not None and not 0 <= run < checkpoint_runs(state):
        errs.append(f"checkpoint_run={run} is out of range: checkpoint {path!r} has {checkpoint_runs(state)} runs")


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


__all__ = ["PROBE_SEED", "PROBE_SEQUENCES", "Probe", "check_changes", "check_checkpoint", "check_choice", "check_heads",
           "check_layer", "check_meta", "check_site", "check_value_shape", "edited_sites", "slice_shape",
           "validate_interventions"]
