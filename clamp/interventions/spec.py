"""Interventions as data: frozen, keyword-only dataclasses with a registry of kinds.

Why this file exists: an arm of a study is described by a list of interventions
that must be written to and read back from JSON exactly (the results record
how to rerun), compared, and validated before anything trains.  This module
holds only the *description* (no torch graph work, no nnsight): what each kind
touches and when.  Convenience constructors for the common cases (Singh et
al.'s clamps, head knockouts) live in :mod:`clamp.interventions.constructors`.
What a kind does to a forward pass lives in
:mod:`clamp.interventions.effects`; applying it inside an nnsight trace lives in
:mod:`clamp.interventions.apply`.

Schedules are in sequences seen (per run).  An intervention is active at a
training step or evaluation when ``start <= seen < stop`` for one of its
windows (``stop=None``: to the end of training).  A training step is labelled
by the sequences seen *before* it; an evaluation by the sequences seen when it
runs.

Example:
    >>> iv = Knockout(site="blocks.1.attn.hook_v", keep=(0,))
    >>> intervention_from_dict(iv.to_dict()) == iv
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Sequence

from clamp.errors import ConfigError

KINDS: dict[str, type["Intervention"]] = {}


@dataclass(frozen=True, kw_only=True)
class Window:
    """Active while ``start <= seen < stop`` (``stop=None``: until training ends), in sequences seen.

    Example:
        >>> Window(start=64, stop=128).contains(100)
        True
    """

    start: int = 0
    stop: int | None = None

    def contains(self, seen: int) -> bool:
        return self.start <= seen and (self.stop is None or seen < self.stop)

    def to_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop}

    @classmethod
    def coerce(cls, w: "Window | dict | Sequence[int | None]") -> "Window":
        """A Window from a Window, a ``{"start", "stop"}`` dict or a ``(start, stop)`` pair."""
        if isinstance(w, Window):
            return w
        if isinstance(w, dict):
            unknown = set(w) - {"start", "stop"}
            if unknown:
                raise ConfigError(f"Window got unknown keys {sorted(unknown)}; valid keys are ['start', 'stop'].")
            return cls(**w)
        if isinstance(w, (list, tuple)) and len(w) == 2:
            return cls(start=w[0], stop=w[1])
        raise ConfigError(f"cannot read a window from {w!r}; give Window(start=..., stop=...), a dict or a (start, stop) pair.")


def _tuple_or_none(v: Any) -> tuple | None:
    if v is None:
        return None
    if isinstance(v, int):
        return (v,)
    return tuple(v)


def _nested_tuple(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_nested_tuple(x) for x in v)
    if hasattr(v, "tolist"):  # a tensor or array
        return _nested_tuple(v.tolist())
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, Window):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


@dataclass(frozen=True, kw_only=True)
class Intervention:
    """Base of every kind.  Subclasses set the class variable ``kind`` (the registry key).

    Attributes:
        name: unique within an arm; used in metric names (``fired/<name>``).
            Left empty, it is derived from the kind and site.
        windows: when it is active, in sequences seen; default: always.
    """

    kind: ClassVar[str] = ""
    name: str = ""
    windows: tuple[Window, ...] = (Window(),)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind:
            if kind in KINDS:
                raise TypeError(f"intervention kind {kind!r} is registered twice")
            KINDS[kind] = cls

    def __post_init__(self) -> None:
        windows = self.windows
        if isinstance(windows, (Window, dict)):
            windows = (windows,)
        object.__setattr__(self, "windows", tuple(Window.coerce(w) for w in windows))
        self._normalise()
        if not self.name:
            object.__setattr__(self, "name", self.default_name())

    def _normalise(self) -> None:
        """Turn lists into tuples so that equality and JSON round trips hold."""

    def default_name(self) -> str:
        return self.kind

    def active(self, seen: int) -> bool:
        """Whether any window contains ``seen`` (sequences seen)."""
        return any(w.contains(seen) for w in self.windows)

    def to_dict(self) -> dict:
        """JSON-ready dict with a ``kind`` key; :func:`intervention_from_dict` reads it back."""
        d: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            d[f.name] = _jsonable(getattr(self, f.name))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Intervention":
        return intervention_from_dict(d)


def intervention_from_dict(d: dict) -> Intervention:
    """Rebuild an intervention from :meth:`Intervention.to_dict` output.

    Rejects unknown kinds and unknown keys with a :class:`ConfigError`.

    Example:
        >>> intervention_from_dict({"kind": "perfect_copy", "layer": 1, "head": 0}).name
        'perfect_copy_L1H0'
    """
    if not isinstance(d, dict):
        raise ConfigError(f"an intervention must be a dict with a 'kind' key, got {type(d).__name__}.")
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in KINDS:
        raise ConfigError(f"unknown intervention kind {kind!r}; choose one of {sorted(KINDS)}.")
    cls = KINDS[kind]
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"intervention kind {kind!r} got unknown keys {sorted(unknown)}; valid keys are {sorted(known)}.")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"intervention kind {kind!r}: {e}") from None


# --------------------------------------------------------------------------- kinds

Target = Literal["output", "values", "pattern"]
TARGET_HOOK = {"output": "hook_z", "values": "hook_v", "pattern": "hook_pattern"}


def _heads_tag(heads: tuple[int, ...] | None, keep: tuple[int, ...] | None = None) -> str:
    if keep is not None:
        return "keep" + "-".join(map(str, keep))
    if heads is None:
        return "all"
    return "h" + "-".join(map(str, heads))


def _site_tag(site: str) -> str:
    return site.replace("blocks.", "L").replace(".attn.", ".").replace("hook_", "").replace(".", "_")


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
        object.__setattr__(self, "heads", _tuple_or_none(self.heads))
        object.__setattr__(self, "positions", _tuple_or_none(self.positions))
        object.__setattr__(self, "value", _nested_tuple(self.value))

    def default_name(self) -> str:
        return f"clamp_{_site_tag(self.site)}_{_heads_tag(self.heads)}"


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
        object.__setattr__(self, "heads", _tuple_or_none(self.heads))
        object.__setattr__(self, "positions", _tuple_or_none(self.positions))

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.attn.hook_pattern"

    def default_name(self) -> str:
        heads = "H" + "-".join(map(str, self.heads or ()))
        return f"{self.pattern}_L{self.layer}{heads}"


@dataclass(frozen=True, kw_only=True)
class FunctionClamp(Intervention):
    """Set a slice to the output of a user function of the batch.

    ``fn`` is an importable dotted path ``"package.module:function"``; it is
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
    fn: str
    heads: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    kwargs: dict = field(default_factory=dict)

    def _normalise(self) -> None:
        object.__setattr__(self, "heads", _tuple_or_none(self.heads))
        object.__setattr__(self, "positions", _tuple_or_none(self.positions))
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def default_name(self) -> str:
        return f"fn_{self.fn.rsplit(':', 1)[-1]}_{_site_tag(self.site)}_{_heads_tag(self.heads)}"


@dataclass(frozen=True, kw_only=True)
class IdealLayer1(Intervention):
    """Singh et al.'s layer-1 clamp: replace the layers below ``layer`` by an ideal previous-token circuit.

    Layer ``layer``'s queries and keys (hence its patterns) are computed from an
    idealised residual: the raw embeddings, with each label token's embedding
    replaced by that of the item before it.  Its values, and the residual
    stream it adds to, are the raw embeddings.  Computed from the model's own
    embeddings, so gradient flows into the embeddings and into layer
    ``layer``'s query/key weights.  Needs a task with label tokens
    (``label_pos`` in the batch meta) and at least ``layer + 1`` layers.

    Example:
        >>> IdealLayer1().name
        'ideal_layer1'
    """

    kind: ClassVar[str] = "ideal_layer1"
    layer: int = 1

    def default_name(self) -> str:
        return "ideal_layer1" if self.layer == 1 else f"ideal_below_L{self.layer}"


@dataclass(frozen=True, kw_only=True)
class PerfectCopy(Intervention):
    """Singh et al.'s copy clamp: the query position's logits become one head's pre-softmax scores.

    The logit of each label in context is the score of head ``head`` of layer
    ``layer`` from the query to that label's token; labels not in context get
    ``-inf``.  Computed from the model, so gradient flows into the head's
    queries and keys (and everything below them).  Needs the few-shot task and
    a second layer (``layer >= 1``).

    Example:
        >>> PerfectCopy(layer=1, head=3).name
        'perfect_copy_L1H3'
    """

    kind: ClassVar[str] = "perfect_copy"
    layer: int = 1
    head: int = 0

    def default_name(self) -> str:
        return f"perfect_copy_L{self.layer}H{self.head}"


Method = Literal["zero", "mean", "resample"]


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
            object.__setattr__(self, name, _tuple_or_none(getattr(self, name)))

    def default_name(self) -> str:
        method = "" if self.method == "zero" else f"_{self.method}"
        return f"knockout{method}_{_site_tag(self.site)}_{_heads_tag(self.heads, self.keep)}"


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
        object.__setattr__(self, "heads", _tuple_or_none(self.heads))

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.attn.{TARGET_HOOK[self.target]}"

    def default_name(self) -> str:
        return f"ablate_L{self.layer}{_heads_tag(self.heads)}_keep_{self.preserve}"


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
        object.__setattr__(self, "heads", _tuple_or_none(self.heads))
        object.__setattr__(self, "positions", _tuple_or_none(self.positions))

    def default_name(self) -> str:
        heads = "" if self.heads is None else "_" + _heads_tag(self.heads)
        return f"graft_{_site_tag(self.site)}{heads}"


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
