"""The model config (architecture), without torch.

Why this file exists: a study is loaded and checked (``clamp list``, a rejected study file, the static
checks of ``clamp run``) before torch is imported; every arm resolves its :class:`ModelConfig` there, and
the static checks need the hook names and head axes (:func:`hook_names`, :func:`head_axis`) of the model
it describes.  :mod:`clamp.model.transformer`, which imports torch, re-exports all of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Literal, get_args

from clamp.errors import ConfigError

Positions = Literal["rope", "learned", "none"]
_POSITIONS = ("rope", "learned", "none")
Init = Literal["torch", "singh2024"]  # the type of ModelConfig.init; the schemes are in clamp.model.init
INIT_SCHEMES: tuple[str, ...] = get_args(Init)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture of the transformer.

    ``d_in``, ``d_vocab``, ``d_out`` and ``n_ctx`` may be left ``None``: they are
    then taken from the task (see :meth:`resolve`).  Defaults are Singh et al.'s
    model: 2 layers x 8 heads, d_model 64, attention-only, pre-LN, RoPE.  ``init``
    names the initialisation scheme (:mod:`clamp.model.init`): ``"torch"`` (the
    default, PyTorch's, one shared stream) or ``"singh2024"`` (the authors' code,
    one stream per parameter).

    Example:
        >>> ModelConfig(n_layers=1, n_heads=2, d_model=8).d_head_resolved
        4
    """

    n_layers: int = 2
    n_heads: int = 8
    d_model: int = 64
    d_head: int | None = None
    attn_only: bool = True
    d_mlp: int | None = None
    layernorm: bool = True
    positions: Positions = "rope"
    rope_base: float = 10_000.0
    d_in: int | None = None
    d_vocab: int | None = None
    d_out: int | None = None
    n_ctx: int | None = None
    init: Init = "torch"
    smear_keys: bool = False  # Olsson et al.'s smeared keys (see Attention.smear); left out of to_dict() when off

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "d_model"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"ModelConfig.{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.d_head is None and self.d_model % self.n_heads != 0:
            raise ConfigError(
                f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "pick d_model as a multiple of n_heads or set d_head explicitly."
            )
        if self.d_head is not None and self.d_head < 1:
            raise ConfigError(f"ModelConfig.d_head must be positive, got {self.d_head}.")
        if self.positions not in _POSITIONS:
            raise ConfigError(
                f"ModelConfig.positions={self.positions!r} is unknown; choose one of {_POSITIONS}."
            )
        if self.positions == "rope" and self.d_head_resolved % 2:
            raise ConfigError(f"RoPE needs an even head dimension, got d_head={self.d_head_resolved}.")
        if self.init not in INIT_SCHEMES:
            raise ConfigError(f"ModelConfig.init={self.init!r} is unknown; choose one of {INIT_SCHEMES} "
                              "('singh2024': Singh et al.'s initialisation, 'torch': PyTorch's defaults).")
        for name in ("d_in", "d_vocab", "d_out", "n_ctx", "d_mlp"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ConfigError(f"ModelConfig.{name} must be a non-negative integer or None, got {v!r}.")

    @property
    def d_head_resolved(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    def resolve(self, dims: dict[str, int]) -> "ModelConfig":
        """Fill the task-given sizes (``d_in``, ``d_vocab``, ``d_out``, ``n_ctx``).

        A size set by the user must fit the task: ``n_ctx`` at least the task's
        sequence length, the others equal.
        """
        updates = {}
        for name, need in dims.items():
            have = getattr(self, name)
            if have is None:
                updates[name] = need
            elif name == "n_ctx" and have < need:
                raise ConfigError(f"ModelConfig.n_ctx={have} is shorter than the task's sequences ({need}); raise it or leave it None.")
            elif name != "n_ctx" and have != need:
                raise ConfigError(f"ModelConfig.{name}={have} does not match the task ({need}); leave it None to take the task's.")
        return replace(self, **updates)

    def to_dict(self) -> dict:
        d = asdict(self)
        # Fields added after the first release are left out at their default, so the
        # run keys (hashes) of studies written before them do not change.
        if d["init"] == "torch":
            del d["init"]
        if not d["smear_keys"]:  # added later: absent when off, so earlier run keys do not change
            del d["smear_keys"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"ModelConfig got unknown keys {sorted(unknown)}; valid keys are {sorted(known)}.")
        return cls(**d)


def head_axis(hook_name: str) -> int | None:
    """The axis holding heads in a hook's activation, or None if it has no head axis."""
    leaf = hook_name.rsplit(".", 1)[-1]
    if leaf in ("hook_q", "hook_k", "hook_v", "hook_z"):
        return 3
    if leaf in ("hook_attn_scores", "hook_pattern"):
        return 2
    return None


def hook_names(cfg: ModelConfig) -> list[str]:
    """The hook points of the built-in Transformer for ``cfg``, in forward order, without building it.

    The same list as ``Transformer(cfg, seeds).hook_names()`` (tests/cli/test_startup_static.py checks it on
    every architecture option), so a study's hook names are checked when it is loaded, before torch.

    Example:
        >>> hook_names(ModelConfig(n_layers=1, n_heads=2, d_model=8))[:3]
        ['hook_embed', 'blocks.0.hook_resid_pre', 'blocks.0.attn.hook_q']
    """
    names = ["hook_embed"]
    for layer in range(cfg.n_layers):
        b = f"blocks.{layer}"
        names += [f"{b}.hook_resid_pre"] + [f"{b}.attn.{h}" for h in
                                            ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z")]
        names.append(f"{b}.hook_attn_out")
        if not cfg.attn_only:
            names += [f"{b}.hook_resid_mid", f"{b}.hook_mlp_out"]
        names.append(f"{b}.hook_resid_post")
    return names + ["hook_logits"]


def is_pattern_hook(name: str, n_layers: int) -> bool:
    """Whether ``name`` is a layer's attention pattern (``blocks.{l}.attn.hook_pattern``, ``l < n_layers``).

    Example:
        >>> is_pattern_hook("blocks.1.attn.hook_pattern", 2), is_pattern_hook("blocks.1.attn.hook_z", 2)
        (True, False)
    """
    parts = name.split(".")
    return (len(parts) == 4 and parts[0] == "blocks" and parts[1].isdigit() and int(parts[1]) < n_layers
            and parts[2:] == ["attn", "hook_pattern"])


