"""Grafts: take an activation, or a whole block, from a checkpointed model.

Why this file exists: grafting asks "what if this part were as it is in that
other model (or at that other time)?"; both kinds load a donor once, frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clamp.interventions.donors import Donor
from clamp.interventions.spec import Intervention, heads_tag, site_tag, tuple_or_none


class _DonorSource:
    """What both graft kinds share: the donor is one ``checkpoint`` file, or a per-seed :class:`Donor`."""

    checkpoint: str | None
    checkpoint_run: int | None
    donor: Donor | None

    def _normalise_donor(self) -> None:
        from clamp.errors import ConfigError

        object.__setattr__(self, "donor", Donor.coerce(self.donor))
        if (self.checkpoint is None) == (self.donor is None):
            raise ConfigError(f"{type(self).__name__}: give exactly one of checkpoint= (one file for every run) or "
                              "donor=clamp.Donor(results=, arm=, at=) (each run from the same seed's donor run).")
        if self.donor is not None and self.checkpoint_run is not None:
            raise ConfigError(f"{type(self).__name__}: checkpoint_run picks a run of a checkpoint file; with donor= each "
                              "run is grafted from its own seed, so leave checkpoint_run unset.")

    def _donor_dict(self, d: dict) -> dict:
        if self.donor is not None:
            d["donor"] = self.donor.to_dict()
        else:
            d.pop("donor", None)  # added later: absent when unset, so earlier run keys (v1 and v2) stand
        return d

    def _donor_model(self, model: Any) -> Any:
        from clamp.interventions.donors import per_seed_donor_model
        from clamp.interventions.effects import donor_model

        if self.donor is not None:
            return per_seed_donor_model(model, self.donor)
        return donor_model(model, self.checkpoint, self.checkpoint_run)

    def _check_source(self, probe: Any, errs: list[str]) -> None:
        from clamp.interventions.probe import check_checkpoint

        if self.donor is None:
            check_checkpoint(self.checkpoint, self.checkpoint_run, probe, errs)
            return
        path = self._any_donor_path()
        arm_dir = self.donor.arm_folder()
        seeds = sorted(int(p.name[4:]) for p in arm_dir.glob("seed*") if p.name[4:].isdigit()) if arm_dir.is_dir() else []
        if path is None and seeds:
            errs.append(self.donor.problem(seeds[0]) or "")  # names the checkpoints the donor runs do have
        elif path is None:
            errs.append(f"no run of donor arm {self.donor.arm!r} in {self.donor.results} has a checkpoint at "
                        f"{self.donor.at} ({self.donor.arm_folder()}/seed*/checkpoints/"
                        f"{self.donor.at:012d}.pt); run the donor study first, or fix Donor(results=, arm=, at=)")
        else:
            check_checkpoint(str(path), None, probe, errs)

    def _any_donor_path(self) -> Any:
        arm_dir = self.donor.arm_folder()
        for p in sorted(arm_dir.glob(f"seed*/checkpoints/{self.donor.at:012d}.pt")) if arm_dir.is_dir() else ():
            return p
        return None

    def _probe_source(self) -> Any:
        import dataclasses

        # the probe model has one run: pair it with the checkpoint's first run when runs are paired r with r;
        # a per-seed donor is probed with any seed's donor checkpoint (the probe's seed is not a study seed)
        if self.donor is not None:
            path = self._any_donor_path()
            if path is None:
                return self
            return dataclasses.replace(self, checkpoint=str(path), checkpoint_run=0, donor=None)
        if self.checkpoint is not None and self.checkpoint_run is None:
            return dataclasses.replace(self, checkpoint_run=0)
        return self

    def _source_words(self) -> str:
        if self.donor is not None:
            return f"the donor arm {self.donor.arm!r} at {self.donor.at}"
        return f"the checkpoint {self.checkpoint!r}"


@dataclass(frozen=True, kw_only=True)
class GraftOutput(_DonorSource, Intervention):
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
    checkpoint: str | None = None
    checkpoint_run: int | None = None
    donor: Donor | None = None
    heads: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None

    def _normalise(self) -> None:
        object.__setattr__(self, "heads", tuple_or_none(self.heads))
        object.__setattr__(self, "positions", tuple_or_none(self.positions))
        self._normalise_donor()

    def to_dict(self) -> dict:
        return self._donor_dict(super().to_dict())

    def default_name(self) -> str:
        heads = "" if self.heads is None else "_" + heads_tag(self.heads)
        return f"graft_{site_tag(self.site)}{heads}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_site

        errs: list[str] = []
        check_site(self.site, self.heads, self.positions, probe, errs)
        self._check_source(probe, errs)
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        import torch

        from clamp.interventions.effects import Compiled, slice_index, slice_op

        donor, state = self._donor_model(model), {}

        def prepare(ctx: Any) -> None:
            with torch.no_grad():
                _, cache = donor.run_with_cache(ctx.batch, [self.site])
            state["donor"] = cache[self.site]

        def new(cur: Any, ctx: Any) -> Any:
            d = state["donor"]
            return d[slice_index(self.site, d.dim(), self.heads, self.positions, cur.device)]
        return Compiled([slice_op(self.site, self.heads, self.positions, new)], prepare=prepare, state=state)

    def for_probe(self) -> Intervention:
        return self._probe_source()

    def noop_reason(self, probe: Any) -> str:
        return f"{self._source_words()} computes the same values there as the model"


@dataclass(frozen=True, kw_only=True)
class GraftParams(_DonorSource, Intervention):
    """Run block ``layer`` with the parameters of a checkpoint (frozen) instead of its own.

    The block's output (``blocks.{layer}.hook_resid_post``) is replaced by the
    checkpoint's block applied to this model's input to the block; gradient
    flows through the frozen block to the layers below, and the model's own
    block gets none.  ``checkpoint``, ``checkpoint_run`` and ``donor`` as in
    :class:`GraftOutput`.

    Example:
        >>> GraftParams(layer=0, checkpoint="ck.pt").name
        'graft_params_L0'
    """

    kind: ClassVar[str] = "graft_params"
    layer: int
    checkpoint: str | None = None
    checkpoint_run: int | None = None
    donor: Donor | None = None

    def _normalise(self) -> None:
        self._normalise_donor()

    def to_dict(self) -> dict:
        return self._donor_dict(super().to_dict())

    def default_name(self) -> str:
        return f"graft_params_L{self.layer}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_layer

        errs: list[str] = []
        check_layer(self.layer, probe, errs)
        self._check_source(probe, errs)
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        from clamp.interventions.effects import Compiled, Op

        block, state = self._donor_model(model).blocks[self.layer], {}

        def run(x: Any, ctx: Any) -> Any:
            state["out"] = block(x)  # the frozen donor block on this model's input
            return x
        return Compiled([Op(f"blocks.{self.layer}.hook_resid_pre", run, edits=False),
                         Op(f"blocks.{self.layer}.hook_resid_post", lambda x, ctx: state["out"])], state=state)

    def for_probe(self) -> Intervention:
        return self._probe_source()

    def noop_reason(self, probe: Any) -> str:
        return f"block {self.layer} of {self._source_words()} has the model's own parameters"
