"""A researcher's own intervention, written with nnsight inside the trace: :class:`NnsightIntervention`.

Why this file exists: nnsight is how this field's researchers edit models, so
clamp lets them write an intervention as a plain function in the study file
that reads and assigns activations with nnsight's own syntax, while clamp
keeps what makes interventions trustworthy here: a schedule of windows, a
firing record (``fired/<name>`` counts the forwards where the function changed
its site), validation on a probe batch before training (it must change its
site and keep its shape and dtype), and a JSON record by import path so worker
processes and resumed runs find the function again::

    def sharpen(model, ctx, *, head=0, power=4.0):
        pattern = model.blocks[1].attn.hook_pattern.output     # [R, B, H, T, T]
        sharp = pattern.clone()                                  # never edit in place
        p = pattern[:, :, head] ** power
        sharp[:, :, head] = p / p.sum(-1, keepdim=True)
        model.blocks[1].attn.hook_pattern.output = sharp

    NnsightIntervention(fn=sharpen, site="blocks.1.attn.hook_pattern", kwargs={"power": 4.0},
                        windows=[Window(start=0, stop=20_000)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from clamp.importpath import function_path, resolve_function
from clamp.interventions.spec import Intervention, site_tag


@dataclass(frozen=True, kw_only=True)
class NnsightIntervention(Intervention):
    """Call a user function inside the nnsight trace when the forward reaches ``site``.

    ``fn(model, ctx, **kwargs)`` gets the nnsight-wrapped model and a
    :class:`~clamp.interventions.effects.Context` (``ctx.seen`` sequences seen,
    ``ctx.train`` training step or evaluation, ``ctx.runs`` the pack's seeds,
    ``ctx.batch``).  It reads ``site``'s ``.output`` and assigns a new tensor of
    the same shape and dtype (clone, edit the clone, assign it: an in-place edit
    is refused, since it breaks backward).  It must touch no hook point after
    ``site`` in forward order.  Gradient flows through the edit unless
    ``blocking=True``, which detaches the entries the function changed (like a
    constant clamp).  ``fn`` is a module-level function (a study file's
    included); the JSON stores its import path.  ``kwargs`` must be JSON values.

    Example:
        >>> NnsightIntervention(site="blocks.1.attn.hook_pattern", fn="mystudy:sharpen").name
        'nnsight_sharpen_L1_pattern'
    """

    kind: ClassVar[str] = "nnsight"
    triggerable: ClassVar[bool] = False  # the user's trace code cannot be limited to some runs of a pack
    site: str
    fn: str | Callable
    blocking: bool = False
    kwargs: dict = field(default_factory=dict)

    def _normalise(self) -> None:
        object.__setattr__(self, "fn", function_path(self.fn))
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def default_name(self) -> str:
        return f"nnsight_{self.fn.rsplit(':', 1)[-1].rsplit('.', 1)[-1]}_{site_tag(self.site)}"

    def check(self, probe: Any) -> list[str]:
        from clamp.errors import ConfigError
        from clamp.interventions.probe import check_site

        errs: list[str] = []
        check_site(self.site, None, None, probe, errs)
        if not isinstance(self.blocking, bool):
            errs.append(f"blocking={self.blocking!r} must be True or False")
        try:
            resolve_function(self.fn)
        except ConfigError as e:
            errs.append(str(e))
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        from clamp.interventions.effects import Compiled, Op

        fn, kwargs = resolve_function(self.fn), dict(self.kwargs)
        op = Op(self.site, lambda wrapped, ctx: fn(wrapped, ctx, **kwargs), traced=True, blocking=self.blocking)
        return Compiled([op], batch_dependent=True, needs_nnsight=True)  # the function may read the whole batch

    def noop_reason(self, probe: Any) -> str:
        return (f"{self.fn} assigned no new value to {self.site}.output (or assigned the values already there); "
                "read it, clone it, edit the clone and assign it back")
