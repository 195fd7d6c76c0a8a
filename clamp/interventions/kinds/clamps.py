"""Clamps: set an activation (or some heads / positions of it) to a constant, a named pattern, or a user function's output.

Why this file exists: the three kinds that *write a given value* into a slice
of one hook point share their selection (heads, positions) and differ only in
where the value comes from; each is one class with its validation and effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

from clamp.importpath import function_path, resolve_function
from clamp.interventions.spec import Intervention, heads_tag, nested_tuple, site_tag, tuple_or_none


@dataclass(frozen=True, kw_only=True)
class Clamp(Intervention):
    """Set an activation (or some heads / positions of it) to a constant.

    ``value`` is a nested list (or a number) that broadcasts to the selected
    slice of one sequence: the activation's shape without its leading run and
    batch axes, with the head axis cut to ``heads`` and the position axis (the
    query axis for patterns and scores) cut to ``positions``.  A constant
    blocks the gradient into whatever computed the clamped entries.

    Example:
        >>> Clamp(site="blocks.0.attn.hook_z", heads=(1,), value=0.0).name
        'clamp_L0_z_h1'
    """

    kind: ClassVar[str] = "clamp"
    site: str
    heads: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    value: Any = 0.0

    def _normalise(self) -> None:
        object.__setattr__(self, "heads", tuple_or_none(self.heads))
        object.__setattr__(self, "positions", tuple_or_none(self.positions))
        object.__setattr__(self, "value", nested_tuple(self.value))

    def default_name(self) -> str:
        return f"clamp_{site_tag(self.site)}_{heads_tag(self.heads)}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_site, check_value_shape, slice_shape

        errs: list[str] = []
        if check_site(self.site, self.heads, self.positions, probe, errs):
            check_value_shape(self.value, slice_shape(self.site, self.heads, self.positions, probe)[2:], errs, "value")
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        import torch

        from clamp.interventions.effects import Compiled, slice_op

        value = torch.as_tensor(self.value, dtype=torch.float32)
        constant = float(value) if value.dim() == 0 else None
        return Compiled([slice_op(self.site, self.heads, self.positions, lambda cur, ctx: value.to(cur.device), constant)])

    def noop_reason(self, probe: Any) -> str:
        return f"value {list(self.value) if isinstance(self.value, tuple) else self.value} equals what the model computes there"


PatternName = Literal["prev_token", "uniform", "induction"]


@dataclass(frozen=True, kw_only=True)
class PatternClamp(Intervention):
    """Set heads' attention patterns to a named pattern (a constant: blocks their query/key gradient).

    Patterns (``T`` positions, strength ``s``):

    - ``prev_token``: row ``i`` puts ``s`` on ``i-1`` and ``1-s`` on itself; row 0 on itself.
    - ``uniform``: row ``i`` is uniform over positions ``0..i``.
    - ``induction`` (few-shot task only): the query row (the last) puts ``s`` on
      the correct label token and ``1-s`` spread evenly over the other label
      tokens (Singh et al.'s oracle; with two pairs, ``1-s`` on the incorrect
      one); other rows keep the model's pattern.

    ``positions`` (query rows) further restricts which rows are clamped.

    Example:
        >>> PatternClamp(layer=0, heads=(0,), pattern="prev_token").name
        'prev_token_L0H0'
    """

    kind: ClassVar[str] = "pattern_clamp"
    layer: int
    heads: tuple[int, ...]
    pattern: PatternName
    strength: float = 1.0
    positions: tuple[int, ...] | None = None

    def _normalise(self) -> None:
        object.__setattr__(self, "heads", tuple_or_none(self.heads))
        object.__setattr__(self, "positions", tuple_or_none(self.positions))

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.attn.hook_pattern"

    def default_name(self) -> str:
        heads = "H" + "-".join(map(str, self.heads or ()))
        return f"{self.pattern}_L{self.layer}{heads}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_choice, check_heads, check_layer, check_meta, check_site

        errs: list[str] = []
        if check_layer(self.layer, probe, errs) and check_heads(self.heads or (), probe, errs):
            check_site(self.site, None, self.positions, probe, errs)
        if not self.heads:
            errs.append("heads is empty; name the head(s) whose pattern to clamp")
        check_choice(self.pattern, ("prev_token", "uniform", "induction"), "pattern", errs)
        if not 0.0 <= self.strength <= 1.0:
            errs.append(f"strength={self.strength} must be in [0, 1] (attention on the target token)")
        if self.pattern == "induction":
            check_meta(["label_pos", "correct_pos"], probe, errs, "the induction pattern")
        return errs

    def _rows(self, T: int) -> list[int]:
        """The query rows this clamp writes."""
        rows = list(range(T - 1, T)) if self.pattern == "induction" else list(range(T))
        return rows if self.positions is None else [t for t in rows if t in self.positions]

    def compile(self, model: Any, task: Any) -> Any:
        import torch

        from clamp.interventions.effects import Compiled, Op, build_pattern, induction_row

        masks: dict[tuple, Any] = {}  # (shape, device) -> [1, 1, H, T, 1] bool: the clamped heads and rows
        fixed: dict[tuple, Any] = {}  # the constant patterns (prev_token, uniform), [T, T]

        def fn(x: Any, ctx: Any) -> Any:  # x: [R, B, H, T, T]
            T = x.shape[-1]
            key = (tuple(x.shape), x.device)
            if key not in masks:
                rows = self._rows(T)
                mask = torch.zeros(1, 1, x.shape[2], T, 1, dtype=torch.bool, device=x.device)
                if rows:
                    h = torch.tensor(list(self.heads), device=x.device)
                    mask[:, :, h[:, None], torch.tensor(rows, device=x.device)[None, :]] = True
                masks[key] = mask
            if self.pattern == "induction":  # the query row, per sequence, broadcast over heads and rows
                value = induction_row(ctx.batch, T, self.strength)[:, :, None, None, :]
            else:
                if key not in fixed:
                    fixed[key] = build_pattern(self.pattern, ctx.batch, T, self.strength)[0][0, 0].to(x.dtype)
                value = fixed[key]
            return torch.where(masks[key], value.to(x.dtype), x)
        return Compiled([Op(self.site, fn)])

    def noop_reason(self, probe: Any) -> str:
        T = probe.T
        if not self._rows(T):
            if self.pattern == "induction":
                return (f"positions {self.positions} contain no query row of an induction pattern "
                        f"(its only row is the query, position {T - 1})")
            return f"positions {self.positions} select no row of a {T}-position pattern"
        if self._rows(T) == [0]:
            return "row 0 of a causal pattern always puts all its weight on position 0, which is what the clamp writes"
        return f"the {self.pattern} pattern at strength {self.strength} equals the model's pattern on the rows it writes"


@dataclass(frozen=True, kw_only=True)
class FunctionClamp(Intervention):
    """Set a slice to the output of a user function of the batch.

    ``fn`` is a module-level function (a study file's functions included) or its
    import path ``"package.module:function"``; the JSON stores the path.  It is
    called as ``fn(batch, **kwargs)`` at every forward where the clamp is active
    and must return a tensor that broadcasts to the selected slice *with* its
    run and batch axes (``[R, B, ...]``).  ``kwargs`` must be JSON values.
    Gradient flows into anything the returned tensor was computed from.

    Example:
        >>> FunctionClamp(site="blocks.0.attn.hook_pattern", heads=(0,), fn="mymod:make").name
        'fn_make_L0_pattern_h0'
    """

    kind: ClassVar[str] = "function_clamp"
    site: str
    fn: str | Callable
    heads: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    kwargs: dict = field(default_factory=dict)

    def _normalise(self) -> None:
        object.__setattr__(self, "fn", function_path(self.fn))
        object.__setattr__(self, "heads", tuple_or_none(self.heads))
        object.__setattr__(self, "positions", tuple_or_none(self.positions))
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def default_name(self) -> str:
        return f"fn_{self.fn.rsplit(':', 1)[-1]}_{site_tag(self.site)}_{heads_tag(self.heads)}"

    def check(self, probe: Any) -> list[str]:
        import torch

        from clamp.errors import ConfigError
        from clamp.interventions.probe import check_site, check_value_shape, slice_shape

        errs: list[str] = []
        if not check_site(self.site, self.heads, self.positions, probe, errs):
            return errs
        try:
            out = resolve_function(self.fn)(probe.batch, **self.kwargs)
        except ConfigError as e:
            return errs + [str(e)]
        except Exception as e:  # noqa: BLE001 - report the user's function failing
            return errs + [f"calling {self.fn}(batch, **kwargs) on a sample batch failed: {e!r}"]
        if not isinstance(out, torch.Tensor):
            return errs + [f"{self.fn} returned {type(out).__name__}, not a tensor"]
        check_value_shape(out, slice_shape(self.site, self.heads, self.positions, probe), errs,
                          f"the output of {self.fn} (on a 1-run, {probe.batch.size}-sequence batch)")
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        from clamp.interventions.effects import Compiled, slice_op

        fn, kwargs, state = resolve_function(self.fn), dict(self.kwargs), {}

        def prepare(ctx: Any) -> None:
            state["value"] = fn(ctx.batch, **kwargs)
        op = slice_op(self.site, self.heads, self.positions, lambda cur, ctx: state["value"])
        return Compiled([op], batch_dependent=True, prepare=prepare, state=state)  # the function sees the whole batch

    def noop_reason(self, probe: Any) -> str:
        return f"{self.fn} returns the values the model already computes there"
