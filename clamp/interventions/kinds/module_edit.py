"""Interventions on any module of a foreign model, addressed by its path: :class:`ModuleEdit`.

Why this file exists: a model clamp did not write has activations no adapter
names (an MLP's hidden layer, a layer norm's output, a user block's input).
nnsight addresses them by module path (``model.net.transformer.h[0].mlp``); a
:class:`ModuleEdit` does the same -- the module's input or output, an index
expression over the tensor, and what to write there (a constant, a knockout by
zero / batch mean / resample, or a user function) -- with clamp's schedule,
firing record and validation.  The foreign model installs a hook point on that
module (:meth:`clamp.model.foreign_module.ForeignModel.add_site`), so the edit
runs through the same applier (nnsight trace or hooks) as every other kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

from clamp.errors import ConfigError
from clamp.importpath import function_path, resolve_function
from clamp.interventions.spec import Intervention, nested_tuple

Method = Literal["clamp", "zero", "mean", "resample", "function"]
METHODS = ("clamp", "zero", "mean", "resample", "function")


def parse_index(expr: str) -> tuple:
    """An index expression over a tensor, read without ``eval``: ints, ``a:b:c`` slices and ``...``.

    Example:
        >>> parse_index("[:, -1, 0:4]")
        (slice(None, None, None), -1, slice(0, 4, None))
        >>> parse_index("...")
        (Ellipsis,)
    """
    text = expr.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text.strip():
        return (Ellipsis,)
    out: list[Any] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if part == "...":
                out.append(Ellipsis)
            elif ":" in part:
                bits = [b.strip() for b in part.split(":")]
                if len(bits) > 3:
                    raise ValueError(part)
                out.append(slice(*[int(b) if b else None for b in bits]))
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigError(f"index {expr!r}: cannot read {part!r}; use integers, a:b:c slices and ... "
                              "(e.g. '[:, -1, 0:8]')") from None
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class ModuleEdit(Intervention):
    """Edit the input or output of any module of a foreign model, by the module's path.

    ``index`` selects part of the module's tensor (its own axes, batch first: no run
    axis), e.g. ``"[:, -1, 0:8]"`` (every sequence, the last position, the first 8
    features).  ``method``:

    - ``clamp``: write ``value`` (broadcast to the selection; a constant blocks the gradient);
    - ``zero`` / ``mean`` / ``resample``: knock the selection out with 0, its mean over the
      batch, or the previous sequence's (mean and resample need the batch axis unselected);
    - ``function``: write ``fn(selection, ctx, **kwargs)`` (a module-level function, stored
      by import path; gradient flows through what it computes).

    Example:
        >>> ModuleEdit(module="transformer.h.0.mlp", index="[:, -1]", method="zero").name
        'edit_transformer_h_0_mlp_output'
    """

    kind: ClassVar[str] = "module_edit"
    module: str
    io: Literal["output", "input"] = "output"
    index: str = "..."
    method: Method = "clamp"
    value: Any = 0.0
    fn: str | Callable | None = None
    kwargs: dict = field(default_factory=dict)

    def _normalise(self) -> None:
        object.__setattr__(self, "value", nested_tuple(self.value))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        if self.fn is not None:
            object.__setattr__(self, "fn", function_path(self.fn))

    def default_name(self) -> str:
        path = self.module[4:] if self.module.startswith("net.") else self.module
        return f"edit_{path.replace('.', '_')}_{self.io}"

    def _slice_shape(self, probe: Any) -> tuple[int, ...]:
        import torch

        site = probe.model.add_site(self.module, self.io)
        with torch.no_grad():
            _, cache = probe.model.run_with_cache(probe.batch, [site])
        return tuple(torch.empty(cache[site].shape[1:])[parse_index(self.index)].shape)

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_choice, check_value_shape

        errs: list[str] = []
        check_choice(self.method, METHODS, "method", errs)
        check_choice(self.io, ("output", "input"), "io", errs)
        if not hasattr(probe.model, "add_site"):
            return errs + ["module edits address a foreign model's modules (clamp.ModelSpec / clamp.hf_gpt2); on the "
                           "built-in model use its hook names (Clamp, Knockout)"]
        try:
            idx = parse_index(self.index)
            shape = self._slice_shape(probe)
        except ConfigError as e:
            return errs + [str(e)]
        except (IndexError, TypeError) as e:
            return errs + [f"index {self.index!r} does not fit the tensor at {self.module} ({self.io}): {e}"]
        if self.method in ("mean", "resample") and idx and idx[0] is not Ellipsis and idx[0] != slice(None):
            errs.append(f"method={self.method!r} works over the batch axis, so the index must keep it whole; start it with ':'")
        if self.method == "clamp":
            check_value_shape(self.value, shape[1:] if len(shape) else shape, errs, "value")
        if self.method == "function":
            if self.fn is None:
                errs.append("method='function' needs fn='module:function'")
            else:

                try:
                    resolve_function(self.fn)
                except ConfigError as e:
                    errs.append(str(e))
        elif self.fn is not None:
            errs.append(f"fn is only used with method='function' (method is {self.method!r}); drop it")
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        import torch

        from clamp.interventions.effects import Compiled, Op, ablate

        if not hasattr(model, "add_site"):
            raise ConfigError(f"{self.name}: module edits need a foreign model (clamp.ModelSpec); use hook names on the built-in model")
        site = model.add_site(self.module, self.io)
        idx = parse_index(self.index)
        value = torch.as_tensor(self.value, dtype=torch.float32)
        user = resolve_function(self.fn) if self.method == "function" else None

        def fn(x: Any, ctx: Any) -> Any:  # x: [1, B, ...] (the module's tensor with a run axis of 1)
            cur = x[0][idx]
            if self.method == "clamp":
                new = value.to(cur.device)
            elif self.method == "function":
                new = user(cur, ctx, **self.kwargs)
            else:  # zero, the batch mean, or the previous sequence's (ablate works on [R, B, ...])
                new = ablate(self.method, cur[None])
                new = new[0] if new.dim() else new
            y = x.clone()
            y[0][idx] = torch.as_tensor(new).expand_as(cur).to(x.dtype)
            return y
        return Compiled([Op(site, fn)], batch_dependent=self.method in ("mean", "resample", "function"))

    def noop_reason(self, probe: Any) -> str:
        return f"the selected part of {self.module}'s {self.io} already holds what method={self.method!r} writes"
