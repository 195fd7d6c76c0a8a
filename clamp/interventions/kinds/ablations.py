"""Ablations: knock heads (or any slice) out, alone or while later layers keep their clean patterns/values.

Why this file exists: ablating is the field's basic causal test; the two kinds
here differ in whether the ablation may act through every path (:class:`Knockout`)
or only through one (:class:`PreservingAblation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from clamp.interventions.spec import Intervention, heads_tag, site_tag, tuple_or_none

Method = Literal["zero", "mean", "resample"]
Target = Literal["output", "values", "pattern"]
METHODS = ("zero", "mean", "resample")
TARGET_HOOK = {"output": "hook_z", "values": "hook_v", "pattern": "hook_pattern"}  # what a Target ablates


@dataclass(frozen=True, kw_only=True)
class Knockout(Intervention):
    """Ablate an activation, or some heads / positions of it.

    Methods:

    - ``zero``: set to 0 (blocks all gradient through the slice).
    - ``mean`` over ``mean_over="batch"``: the mean over the current batch, per
      run and position (computed: gradient flows through the mean).
    - ``mean`` over ``mean_over="reference"``: the mean, per run and position,
      over a fixed reference set of ``reference_size`` sequences drawn from the
      task's training distribution with ``reference_seed``; computed without
      gradient by the model loaded from ``checkpoint`` (once), or, with no
      checkpoint, by the current model at every forward.
    - ``resample``: each sequence takes the slice from the previous sequence of
      the same batch (a roll by one along the batch; gradient flows).

    Give ``heads`` to ablate those heads, or ``keep`` to ablate all heads but those.

    Example:
        >>> Knockout(site="blocks.1.attn.hook_v", keep=(0,)).name
        'knockout_L1_v_keep0'
    """

    kind: ClassVar[str] = "knockout"
    site: str
    heads: tuple[int, ...] | None = None
    keep: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    method: Method = "zero"
    mean_over: Literal["batch", "reference"] = "batch"
    reference_size: int = 512
    reference_seed: int = 0
    checkpoint: str | None = None
    checkpoint_run: int | None = None

    def _normalise(self) -> None:
        for name in ("heads", "keep", "positions"):
            object.__setattr__(self, name, tuple_or_none(getattr(self, name)))

    def default_name(self) -> str:
        method = "" if self.method == "zero" else f"_{self.method}"
        return f"knockout{method}_{site_tag(self.site)}_{heads_tag(self.heads, self.keep)}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_checkpoint, check_choice, check_site

        errs: list[str] = []
        if self.heads is not None and self.keep is not None:
            errs.append("give heads= (heads to knock out) or keep= (heads to spare), not both")
        elif check_site(self.site, self.heads if self.keep is None else self.keep, self.positions, probe, errs):
            if self.keep is not None and len(set(self.keep)) >= probe.cfg.n_heads:
                errs.append(f"keep={list(self.keep)} spares every head, so nothing is knocked out; keep fewer heads")
        check_choice(self.method, METHODS, "method", errs)
        check_choice(self.mean_over, ("batch", "reference"), "mean_over", errs)
        if self.method == "mean" and self.mean_over == "reference":
            if self.reference_size < 1:
                errs.append(f"reference_size={self.reference_size} must be positive")
            if self.checkpoint is not None:
                check_checkpoint(self.checkpoint, self.checkpoint_run, probe, errs)
        elif self.checkpoint is not None:
            errs.append("checkpoint is only used with method='mean', mean_over='reference'; drop it")
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        import torch

        from clamp.interventions.effects import (Compiled, ablate, donor_model, reference_batch, resolve_heads,
                                                 slice_index, slice_op)

        heads = resolve_heads(model.cfg.n_heads, self.heads, self.keep)
        by_reference = self.method == "mean" and self.mean_over == "reference"
        state: dict = {}
        fixed: dict = {}  # the reference mean of a fixed (checkpointed) model, computed once
        if by_reference:
            ref = reference_batch(task, self.reference_size, self.reference_seed, model.n_runs)
            ref = ref.to(next(model.parameters()).device)
            donor = donor_model(model, self.checkpoint, self.checkpoint_run) if self.checkpoint is not None else None

        def prepare(ctx: Any) -> None:
            if not by_reference:
                return
            if "mean" not in fixed:
                with torch.no_grad():
                    _, cache = (donor or model).run_with_cache(ref, [self.site])
                mean = cache[self.site].mean(1, keepdim=True)  # [R, 1, ...]
                if donor is None:
                    state["mean"] = mean  # the current model: recomputed at every forward
                    return
                fixed["mean"] = mean
            state["mean"] = fixed["mean"]

        def new(cur: Any, ctx: Any) -> Any:
            if self.method != "mean" or self.mean_over == "batch":
                if self.method == "resample" and cur.shape[1] < 2:
                    raise ValueError(f"{self.name}: resample ablation needs at least 2 sequences per batch.")
                return ablate(self.method, cur)
            mean = state["mean"]
            return mean[slice_index(self.site, mean.dim(), heads, self.positions, mean.device)]

        over_batch = self.method == "resample" or (self.method == "mean" and self.mean_over == "batch")
        op = slice_op(self.site, heads, self.positions, new, 0.0 if self.method == "zero" else None)
        return Compiled([op], batch_dependent=over_batch, prepare=prepare, state=state)

    def for_probe(self) -> Intervention:
        import dataclasses

        # the probe model has one run: pair it with the checkpoint's first run when runs are paired r with r
        if getattr(self, "checkpoint", None) is not None and self.checkpoint_run is None:
            return dataclasses.replace(self, checkpoint_run=0)
        return self

    def noop_reason(self, probe: Any) -> str:
        what = {"zero": "already zero", "mean": "already equal to its mean",
                "resample": "the same in every sequence"}.get(self.method, "unchanged")
        return f"the selected slice is {what} on the probe batch (e.g. row 0 of a causal pattern is always [1, 0, ...])"


@dataclass(frozen=True, kw_only=True)
class PreservingAblation(Intervention):
    """Ablate heads of ``layer`` while every later layer keeps its clean patterns (or values).

    A clean pass is run first: the arm's model with every other active
    intervention applied (all but the preserving ablations), so "clean"
    means "this arm's model without the ablation".  Then, in the
    intervened pass, the ``target`` of ``heads`` in ``layer`` is ablated with
    ``method`` (batch mean for ``mean``) and every later layer's
    ``hook_pattern`` (``preserve="patterns"``) or ``hook_v``
    (``preserve="values"``) is set to its clean value, so the ablation acts
    only through the other path (values, or patterns).  Gradient flows through
    the clean pass.  Needs a layer after ``layer``.

    Example:
        >>> PreservingAblation(layer=0, heads=(1,), preserve="patterns").name
        'ablate_L0h1_keep_patterns'
    """

    kind: ClassVar[str] = "preserving_ablation"
    layer: int
    heads: tuple[int, ...]
    preserve: Literal["patterns", "values"]
    target: Target = "output"
    method: Method = "zero"

    def _normalise(self) -> None:
        object.__setattr__(self, "heads", tuple_or_none(self.heads))

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.attn.{TARGET_HOOK.get(self.target, self.target)}"

    def default_name(self) -> str:
        return f"ablate_L{self.layer}{heads_tag(self.heads)}_keep_{self.preserve}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_choice, check_heads, check_layer

        errs: list[str] = []
        if check_layer(self.layer, probe, errs) and self.layer >= probe.cfg.n_layers - 1:
            errs.append(f"a {self.preserve}-preserving ablation of layer {self.layer} needs a later layer; the model has "
                        f"{probe.cfg.n_layers} layer(s): ablate a lower layer or add layers")
        check_heads(self.heads or (), probe, errs)
        if not self.heads:
            errs.append("heads is empty; name the head(s) to ablate")
        check_choice(self.preserve, ("patterns", "values"), "preserve", errs)
        check_choice(self.target, ("output", "values", "pattern"), "target", errs)
        check_choice(self.method, METHODS, "method", errs)
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        from clamp.interventions.effects import Compiled, Op, ablate, slice_op

        leaf = "hook_pattern" if self.preserve == "patterns" else "hook_v"
        later = tuple(f"blocks.{m}.attn.{leaf}" for m in range(self.layer + 1, model.cfg.n_layers))
        ops = [slice_op(self.site, self.heads, None, lambda cur, ctx: ablate(self.method, cur),
                        0.0 if self.method == "zero" else None)]
        ops += [Op(site, lambda x, ctx, site=site: ctx.clean[site]) for site in later]
        return Compiled(ops, clean_sites=later, batch_dependent=self.method != "zero")
