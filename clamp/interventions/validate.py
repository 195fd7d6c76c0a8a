"""Validation of an arm's interventions against a model and task, before anything trains.

Why this file exists: an intervention that names a hook that does not exist,
a head out of range, a window that never opens or a value of the wrong shape
would otherwise fail late (mid-run) or, worse, do nothing silently.  Every
problem found is reported in one :class:`ConfigError` naming the intervention
and the fix.  Shapes are read from a probe forward of a one-run model built
from the config on two sequences of the task (cheap for the tiny models here).
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

import torch

from clamp.errors import ConfigError
from clamp.interventions.effects import (
    checkpoint_runs, load_checkpoint, load_function, position_axis, slice_index,
)
from clamp.interventions.spec import (
    Clamp, FunctionClamp, GraftOutput, GraftParams, IdealLayer1, Intervention, Knockout, PatternClamp,
    PerfectCopy, PreservingAblation, intervention_from_dict,
)
from clamp.model.transformer import ModelConfig, Transformer, head_axis
from clamp.tasks.batch import Batch


class _Probe:
    """Shapes of every hook and a sample batch, from one forward of a fresh one-run model."""

    def __init__(self, cfg: ModelConfig, task: Any) -> None:
        self.cfg = cfg
        self.model = Transformer(cfg, [0])
        self.batch: Batch = task.sample(2, torch.Generator().manual_seed(0))
        self.names = self.model.hook_names()
        with torch.no_grad():
            _, cache = self.model.run_with_cache(self.batch, self.names)
        self.shapes = {n: tuple(v.shape) for n, v in cache.items()}
        self.T = self.batch.tokens.shape[-1]


def _suggest(site: str, names: list[str]) -> str:
    close = difflib.get_close_matches(site, names, n=3, cutoff=0.4)
    return f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"valid names are {names}"


def _check_site(site: str, heads: tuple[int, ...] | None, positions: tuple[int, ...] | None,
                probe: _Probe, errs: list[str]) -> bool:
    if not isinstance(site, str) or site not in probe.shapes:
        errs.append(f"unknown hook name {site!r}; {_suggest(str(site), probe.names)}")
        return False
    ok = True
    if heads is not None:
        if head_axis(site) is None:
            errs.append(f"hook {site!r} has no head axis; drop heads= or use a per-head hook (hook_q/k/v/z, hook_attn_scores, hook_pattern)")
            ok = False
        else:
            ok &= _check_heads(heads, probe, errs)
    if positions is not None:
        T = probe.shapes[site][position_axis(site)]
        bad = [p for p in positions if not 0 <= p < T]
        if bad or len(set(positions)) != len(positions):
            errs.append(f"positions {list(positions)} must be distinct and in 0..{T - 1}")
            ok = False
    return ok


def _check_heads(heads: Sequence[int], probe: _Probe, errs: list[str], what: str = "head index") -> bool:
    H = probe.cfg.n_heads
    bad = [h for h in heads if not isinstance(h, int) or not 0 <= h < H]
    if bad:
        errs.append(f"{what} {bad} out of range: the model has {H} heads per layer (0..{H - 1})")
        return False
    if len(set(heads)) != len(heads):
        errs.append(f"heads {list(heads)} repeat an index; list each head once")
        return False
    return True


def _check_layer(layer: int, probe: _Probe, errs: list[str]) -> bool:
    L = probe.cfg.n_layers
    if not isinstance(layer, int) or not 0 <= layer < L:
        errs.append(f"layer={layer} is out of range: the model has {L} layer(s) (0..{L - 1}); "
                    "pick a layer in range or raise ModelConfig.n_layers")
        return False
    return True


def _check_meta(keys: Sequence[str], probe: _Probe, errs: list[str], what: str) -> bool:
    missing = [k for k in keys if k not in probe.batch.meta]
    if missing:
        errs.append(f"{what} needs a task whose batches carry {list(missing)} (the few-shot task); this task does not")
        return False
    return True


def _check_value_shape(value: Any, slice_shape: tuple[int, ...], errs: list[str], what: str) -> None:
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


def _slice_shape(site: str, heads: tuple | None, positions: tuple | None, probe: _Probe) -> tuple[int, ...]:
    x = torch.empty(probe.shapes[site])
    return tuple(x[slice_index(site, x.dim(), heads, positions)].shape)


def _check_checkpoint(path: str, run: int | None, probe: _Probe, errs: list[str]) -> None:
    try:
        state = load_checkpoint(path)
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


def _check_one(iv: Intervention, probe: _Probe, errs: list[str]) -> None:
    if isinstance(iv, Clamp):
        if _check_site(iv.site, iv.heads, iv.positions, probe, errs):
            _check_value_shape(iv.value, _slice_shape(iv.site, iv.heads, iv.positions, probe)[2:], errs, "value")
    elif isinstance(iv, PatternClamp):
        if _check_layer(iv.layer, probe, errs) and _check_heads(iv.heads or (), probe, errs):
            _check_site(iv.site, None, iv.positions, probe, errs)
        if not iv.heads:
            errs.append("heads is empty; name the head(s) whose pattern to clamp")
        if iv.pattern not in ("prev_token", "uniform", "induction"):
            errs.append(f"pattern={iv.pattern!r} is unknown; choose prev_token, uniform or induction")
        if not 0.0 <= iv.strength <= 1.0:
            errs.append(f"strength={iv.strength} must be in [0, 1] (attention on the target token)")
        if iv.pattern == "induction":
            _check_meta(["label_pos", "correct_pos"], probe, errs, "the induction pattern")
    elif isinstance(iv, FunctionClamp):
        if _check_site(iv.site, iv.heads, iv.positions, probe, errs):
            try:
                fn = load_function(iv.fn)
                out = fn(probe.batch, **iv.kwargs)
            except ConfigError as e:
                errs.append(str(e))
                return
            except Exception as e:  # noqa: BLE001 - report the user's function failing
                errs.append(f"calling {iv.fn}(batch, **kwargs) on a sample batch failed: {e!r}")
                return
            if not isinstance(out, torch.Tensor):
                errs.append(f"{iv.fn} returned {type(out).__name__}, not a tensor")
                return
            _check_value_shape(out, _slice_shape(iv.site, iv.heads, iv.positions, probe), errs,
                               f"the output of {iv.fn} (on a 1-run, 2-sequence batch)")
    elif isinstance(iv, IdealLayer1):
        if probe.cfg.n_layers < 2 or not 1 <= iv.layer < probe.cfg.n_layers:
            errs.append(f"the ideal layer-1 clamp computes layer {iv.layer}'s patterns from an idealised layer below it; "
                        f"it needs 1 <= layer < n_layers, and the model has {probe.cfg.n_layers} layer(s): set n_layers >= 2")
        _check_meta(["label_pos"], probe, errs, "the ideal layer-1 clamp")
    elif isinstance(iv, PerfectCopy):
        if probe.cfg.n_layers < 2 or not 1 <= iv.layer < probe.cfg.n_layers:
            errs.append(f"the perfect copy reads a layer-2 (layer >= 1) head's scores; layer={iv.layer} does not fit a model "
                        f"with {probe.cfg.n_layers} layer(s): set n_layers >= 2 and 1 <= layer < n_layers")
        _check_heads([iv.head], probe, errs)
        _check_meta(["label_pos", "context_labels"], probe, errs, "the perfect copy")
    elif isinstance(iv, Knockout):
        if iv.heads is not None and iv.keep is not None:
            errs.append("give heads= (heads to knock out) or keep= (heads to spare), not both")
        elif _check_site(iv.site, iv.heads if iv.keep is None else iv.keep, iv.positions, probe, errs):
            if iv.keep is not None and len(set(iv.keep)) >= probe.cfg.n_heads:
                errs.append(f"keep={list(iv.keep)} spares every head, so nothing is knocked out; keep fewer heads")
        if iv.method not in ("zero", "mean", "resample"):
            errs.append(f"method={iv.method!r} is unknown; choose zero, mean or resample")
        if iv.mean_over not in ("batch", "reference"):
            errs.append(f"mean_over={iv.mean_over!r} is unknown; choose batch or reference")
        if iv.method == "mean" and iv.mean_over == "reference":
            if iv.reference_size < 1:
                errs.append(f"reference_size={iv.reference_size} must be positive")
            if iv.checkpoint is not None:
                _check_checkpoint(iv.checkpoint, iv.checkpoint_run, probe, errs)
        elif iv.checkpoint is not None:
            errs.append("checkpoint is only used with method='mean', mean_over='reference'; drop it")
    elif isinstance(iv, PreservingAblation):
        if _check_layer(iv.layer, probe, errs):
            if iv.layer >= probe.cfg.n_layers - 1:
                errs.append(f"a {iv.preserve}-preserving ablation of layer {iv.layer} needs a later layer; the model has "
                            f"{probe.cfg.n_layers} layer(s): ablate a lower layer or add layers")
        _check_heads(iv.heads or (), probe, errs)
        if not iv.heads:
            errs.append("heads is empty; name the head(s) to ablate")
        if iv.preserve not in ("patterns", "values"):
            errs.append(f"preserve={iv.preserve!r} is unknown; choose patterns or values")
        if iv.target not in ("output", "values", "pattern"):
            errs.append(f"target={iv.target!r} is unknown; choose output, values or pattern")
        if iv.method not in ("zero", "mean", "resample"):
            errs.append(f"method={iv.method!r} is unknown; choose zero, mean or resample")
    elif isinstance(iv, GraftOutput):
        _check_site(iv.site, iv.heads, iv.positions, probe, errs)
        _check_checkpoint(iv.checkpoint, iv.checkpoint_run, probe, errs)
    elif isinstance(iv, GraftParams):
        _check_layer(iv.layer, probe, errs)
        _check_checkpoint(iv.checkpoint, iv.checkpoint_run, probe, errs)
    else:
        errs.append(f"kind {iv.kind!r} has no validation; it cannot be used")


def _check_windows(iv: Intervention, n_sequences: int | None, errs: list[str]) -> None:
    if not iv.windows:
        errs.append("windows is empty, so it never applies; give at least one Window (Window() = always)")
    for w in iv.windows:
        if not isinstance(w.start, int) or w.start < 0:
            errs.append(f"window start={w.start} must be a non-negative integer (sequences seen)")
        elif w.stop is not None and (not isinstance(w.stop, int) or w.start >= w.stop):
            errs.append(f"window start={w.start} >= stop={w.stop}; the window is empty: make stop > start (or None for 'to the end')")
        elif n_sequences is not None and w.start >= n_sequences:
            errs.append(f"window starts at {w.start} sequences, at or after the run ends ({n_sequences}); "
                        "start it earlier or lengthen TrainConfig.n_sequences")


def validate_interventions(interventions: Sequence[Intervention | dict], model_cfg: ModelConfig, task: Any,
                           n_sequences: int | None) -> None:
    """Check an arm's interventions against the (resolved) model config and built task.

    Raises one :class:`ConfigError` listing every problem, each naming the
    intervention and the fix; returns None if all is well.  ``n_sequences``
    None skips the check that every window opens before the run ends.

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
    probe = _Probe(model_cfg, task)
    problems: list[str] = []
    seen_names: set[str] = set()
    for iv in ivs:
        errs: list[str] = []
        if not isinstance(iv, Intervention):
            problems.append(f"{iv!r} is not an Intervention; build one from clamp.interventions")
            continue
        if iv.name in seen_names:
            errs.append("another intervention of this arm has the same name; give each a unique name=")
        if not iv.name or any(c.isspace() for c in iv.name) or "/" in iv.name:
            errs.append("name must be non-empty, without spaces or '/' (it becomes a metric name)")
        seen_names.add(iv.name)
        _check_windows(iv, n_sequences, errs)
        _check_one(iv, probe, errs)
        problems += [f"{iv.name!r} ({iv.kind}): {e}" for e in errs]
    if problems:
        raise ConfigError("invalid interventions:\n" + "\n".join(f"  - {p}" for p in problems))
