"""The probe a kind is validated against, and the checks several kinds share.

Why this file exists: every kind validates itself (:meth:`Intervention.check`)
against the arm's model and task before anything trains.  What it checks
against is a :class:`Probe`: a fresh one-run model built from the arm's
resolved config, a few sequences of the arm's task, and the shape of every hook
point from one forward (cheap for the tiny models here).  The checks that
several kinds need (a hook name, heads, a layer, a value's shape, a checkpoint)
are written once here; each returns problems as strings naming the fix.
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

import torch

from clamp.errors import ConfigError
from clamp.interventions.effects import checkpoint_runs, load_packed_weights, position_axis, slice_index
from clamp.model.foreign import build_model
from clamp.model.config import ModelConfig, head_axis
from clamp.model.transformer import Transformer
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


def suggest(site: str, names: list[str]) -> str:
    close = difflib.get_close_matches(site, names, n=3, cutoff=0.4)
    return f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"valid names are {names}"


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
    H = probe.cfg.n_heads
    bad = [h for h in heads if not isinstance(h, int) or not 0 <= h < H]
    if bad:
        errs.append(f"{what} {bad} out of range: the model has {H} heads per layer (0..{H - 1})")
        return False
    if len(set(heads)) != len(heads):
        errs.append(f"heads {list(heads)} repeat an index; list each head once")
        return False
    return True


def check_layer(layer: int, probe: Probe, errs: list[str]) -> bool:
    L = probe.cfg.n_layers
    if not isinstance(layer, int) or not 0 <= layer < L:
        errs.append(f"layer={layer} is out of range: the model has {L} layer(s) (0..{L - 1}); "
                    "pick a layer in range or raise ModelConfig.n_layers")
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


__all__ = ["Probe", "PROBE_SEQUENCES", "PROBE_SEED", "suggest", "check_site", "check_heads", "check_layer", "check_meta",
           "check_choice", "check_value_shape", "slice_shape", "check_checkpoint"]
