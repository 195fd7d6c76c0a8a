"""Grafts: take an activation, or a whole block, from a checkpointed model.

Why this file exists: grafting asks "what if this part were as it is in that
other model (or at that other time)?"; both kinds load a donor once, frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clamp.interventions.spec import Intervention, heads_tag, site_tag, tuple_or_none


@dataclass(frozen=True, kw_only=True)
class GraftOutput(Intervention):
    """Replace an activation (or some heads / positions of it) by that of a checkpointed model on the same batch.

    ``checkpoint`` is a file written by ``torch.save`` holding a
    ``Transformer.state_dict()`` (or a ``Trainer.state_dict()``, whose
    ``"model"`` entry is used).  ``checkpoint_run`` picks the run of a packed
    checkpoint used for every run of this model; ``None`` pairs run ``r`` with
    run ``r`` (a one-run checkpoint serves every run).  The grafted value is a
    constant (no gradient).

    Example:
        >>> GraftOutput(site="blocks.0.hook_resid_post", checkpoint="ck.pt").name
        'graft_L0_resid_post'
    """

    kind: ClassVar[str] = "graft_output"
    site: str
    checkpoint: str
    checkpoint_run: int | None = None
    heads: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None

    def _normalise(self) -> None:
        object.__setattr__(self, "heads", tuple_or_none(self.heads))
        object.__setattr__(self, "positions", tuple_or_none(self.positions))

    def default_name(self) -> str:
        heads = "" if self.heads is None else "_" + heads_tag(self.heads)
        return f"graft_{site_tag(self.site)}{heads}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.checks import check_checkpoint, check_site

        errs: list[str] = []
        check_site(self.site, self.heads, self.positions, probe, errs)
        check_checkpoint(self.checkpoint, self.checkpoint_run, probe, errs)
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        import torch

        from clamp.interventions.effects import Compiled, donor_model, slice_index, slice_op

        donor, state = donor_model(model, self.checkpoint, self.checkpoint_run), {}

        def prepare(ctx: Any) -> None:
            with torch.no_grad():
                _, cache = donor.run_with_cache(ctx.batch, [self.site])
            state["donor"] = cache[self.site]

        def new(cur: Any, ctx: Any) -> Any:
            d = state["donor"]
            return d[slice_index(self.site, d.dim(), self.heads, self.positions, cur.device)]
        return Compiled([slice_op(self.site, self.heads, self.positions, new)], prepare=prepare, state=state)

    def for_probe(self) -> Intervention:
        import dataclasses

        # the probe model has one run: pair it with the checkpoint's first run when runs are paired r with r
        if getattr(self, "checkpoint", None) is not None and self.checkpoint_run is None:
            return dataclasses.replace(self, checkpoint_run=0)
        return self

    def noop_reason(self, probe: Any) -> str:
        return f"the checkpoint {self.checkpoint!r} computes the same values there as the model"


@dataclass(frozen=True, kw_only=True)
class GraftParams(Intervention):
    """Run block ``layer`` with the parameters of a checkpoint (frozen) instead of its own.

    The block's output (``blocks.{layer}.hook_resid_post``) is replaced by the
    checkpoint's block applied to this model's input to the block; gradient
    flows through the frozen block to the layers below, and the model's own
    block gets none.  ``checkpoint`` and ``checkpoint_run`` as in
    :class:`GraftOutput`.

    Example:
        >>> GraftParams(layer=0, checkpoint="ck.pt").name
        'graft_params_L0'
    """

    kind: ClassVar[str] = "graft_params"
    layer: int
    checkpoint: str
    checkpoint_run: int | None = None

    def default_name(self) -> str:
        return f"graft_params_L{self.layer}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.checks import check_checkpoint, check_layer

        errs: list[str] = []
        check_layer(self.layer, probe, errs)
        check_checkpoint(self.checkpoint, self.checkpoint_run, probe, errs)
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        from clamp.interventions.effects import Compiled, Op, donor_model

        block, state = donor_model(model, self.checkpoint, self.checkpoint_run).blocks[self.layer], {}

        def run(x: Any, ctx: Any) -> Any:
            state["out"] = block(x)  # the frozen donor block on this model's input
            return x
        return Compiled([Op(f"blocks.{self.layer}.hook_resid_pre", run, edits=False),
                         Op(f"blocks.{self.layer}.hook_resid_post", lambda x, ctx: state["out"])], state=state)

    def for_probe(self) -> Intervention:
        import dataclasses

        # the probe model has one run: pair it with the checkpoint's first run when runs are paired r with r
        if getattr(self, "checkpoint", None) is not None and self.checkpoint_run is None:
            return dataclasses.replace(self, checkpoint_run=0)
        return self

    def noop_reason(self, probe: Any) -> str:
        return f"block {self.layer} of the checkpoint {self.checkpoint!r} has the model's own parameters"
