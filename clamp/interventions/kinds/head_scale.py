"""Scale chosen heads' outputs, and/or add seeded Gaussian noise to them: :class:`HeadScale`.

Why this file exists: a graded alternative to knocking a head out -- turn its
contribution down (``scale`` < 1), up (> 1), or blur it with noise -- to ask how
much of a head the circuit needs while it forms.  It is also the worked example
of a built-in kind: this one file (fields, validation, effect) is all that
adding it took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clamp.interventions.spec import Intervention, tuple_or_none


@dataclass(frozen=True, kw_only=True)
class HeadScale(Intervention):
    """Multiply heads' outputs (``blocks.{layer}.attn.hook_z``) by ``scale`` and add noise of std ``noise``.

    The noise is drawn afresh at every forward from a generator seeded by
    ``(seed, the run's seed, sequences seen, train/eval)``, so a run gets the same
    noise whichever pack it trains in and when it resumes.  Gradient flows
    through the scaling (times ``scale``); the noise is a constant.
    ``scale=1, noise=0`` changes nothing (and is refused by validation).

    Example:
        >>> HeadScale(layer=1, heads=(0, 2), scale=0.5).name
        'head_scale_L1h0-2'
    """

    kind: ClassVar[str] = "head_scale"
    layer: int
    heads: tuple[int, ...]
    scale: float = 1.0
    noise: float = 0.0
    seed: int = 0
    positions: tuple[int, ...] | None = None

    def _normalise(self) -> None:
        object.__setattr__(self, "heads", tuple_or_none(self.heads))
        object.__setattr__(self, "positions", tuple_or_none(self.positions))

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.attn.hook_z"

    def default_name(self) -> str:
        return f"head_scale_L{self.layer}h{'-'.join(map(str, self.heads or ()))}"

    def check(self, probe: Any) -> list[str]:
        import math

        from clamp.interventions.probe import check_layer, check_site

        errs: list[str] = []
        if not self.heads:
            errs.append("heads is empty; name the head(s) to scale")
        elif check_layer(self.layer, probe, errs):
            check_site(self.site, self.heads, self.positions, probe, errs)
        if not math.isfinite(self.scale):
            errs.append(f"scale={self.scale} must be a finite number")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            errs.append(f"noise={self.noise} must be a finite standard deviation >= 0")
        return errs

    def noise_seed(self, run: int, seen: int, train: bool) -> int:
        """The seed of the noise drawn for run ``run`` (its init seed) at ``seen`` sequences."""
        import hashlib

        key = f"head_scale:{self.seed}:{run}:{seen}:{int(train)}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1

    def compile(self, model: Any, task: Any) -> Any:
        import torch

        from clamp.interventions.effects import Compiled, slice_op

        def new(cur: Any, ctx: Any) -> Any:  # cur: [R, B, T, H_sel, dh]
            out = cur * self.scale
            if self.noise:
                noise = torch.stack([
                    torch.randn(cur.shape[1:], generator=torch.Generator().manual_seed(self.noise_seed(run, ctx.seen, ctx.train)))
                    for run in ctx.runs])
                out = out + self.noise * noise.to(cur.device, cur.dtype)
            return out
        # with noise, one draw covers the whole batch: evaluation must not split it into chunks
        return Compiled([slice_op(self.site, self.heads, self.positions, new)], batch_dependent=bool(self.noise))

    def noop_reason(self, probe: Any) -> str:
        if self.scale == 1 and self.noise == 0:
            return "scale=1 and noise=0 leave the heads' outputs as they are"
        return "the selected heads' outputs are zero on the probe batch"
