"""Bring your own model: any ``nn.Module`` a factory builds, trained by clamp's runner with its interventions.

Why this file exists: an arm's model is data (it is hashed into the run key,
written to ``run.json`` and rebuilt in worker processes and on resume), so a
model clamp did not write is named by a :class:`ModelSpec` -- a factory's import
path plus JSON keyword arguments -- and built here into a :class:`ForeignModel`,
which gives the trainer, the interventions and the metrics the same interface as
the built-in :class:`~clamp.model.transformer.Transformer` (a run axis of size 1,
canonical hook names through an :mod:`adapter <clamp.model.adapters>`,
``run_with_cache``).  Foreign models train one run per process: packing seeds on
a run axis stays the built-in model's speed path.

How a task meets the model: a token task (repeated tokens) feeds ``input_ids``
``[B, T]``; an item task (few-shot: continuous item vectors and labels) feeds
``inputs_embeds`` ``[B, T, D]`` made by clamp's own item embedding (a linear map
``d_in -> D`` with bias) and label embedding (``d_vocab -> D``); both read the
logits ``[B, T, C]`` (``out.logits`` for a transformers model).  Loss, evaluation
sets, metrics and phase rules stay the task's.

The factory is called as ``factory(**kwargs, **sizes)`` where ``sizes`` holds
those of the task's ``d_in``, ``d_vocab``, ``d_out``, ``n_ctx`` that it declares
(all of them if it takes ``**kwargs``), inside ``torch.random.fork_rng`` seeded with
the run's init seed: the same seed builds the same weights, and the global RNG
is left as it was.  Dropout would draw from the global RNG during training, so
the model is kept in eval mode (the presets build it with dropout 0).

Example:
    >>> spec = hf_gpt2(n_layer=1, n_head=2, n_embd=8)
    >>> spec.resolve({"d_in": 0, "d_vocab": 5, "d_out": 5, "n_ctx": 6}).n_heads
    2
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from clamp.errors import ConfigError
from clamp.importpath import function_path, resolve, resolve_function

SIZES = ("d_in", "d_vocab", "d_out", "n_ctx")
_INFO: dict[str, dict] = {}  # spec key -> {"n_layers", "n_heads", "d_model", "why_no_pattern"}, built once


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A model built by a factory: an import path and JSON keyword arguments.

    Args:
        factory: ``"package.module:function"`` (or the function itself, stored by its
            path) returning an ``nn.Module`` whose forward takes ``input_ids=`` ``[B, T]``
            or ``inputs_embeds=`` ``[B, T, D]`` and returns logits ``[B, T, C]`` (or an
            object with ``.logits``).
        kwargs: JSON values passed to the factory.
        adapter: how clamp's canonical names map onto the model: ``"auto"`` (by class:
            GPT-2, Llama, else none), ``"gpt2"``, ``"llama"``, ``"none"`` (only ``hook_logits``),
            or ``"module:Class"`` of a :class:`~clamp.model.adapters.Adapter` subclass.
        d_model: width of clamp's item/label embedding for item tasks; default from the adapter.
        sizes: the task's sizes, filled by :meth:`resolve` (leave empty).

    Example:
        >>> ModelSpec(factory="clamp.model.adapters:gpt2_lm", kwargs={"n_layer": 1}).adapter
        'auto'
    """

    factory: str | Callable
    kwargs: dict = field(default_factory=dict)
    adapter: str = "auto"
    d_model: int | None = None
    sizes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "factory", function_path(self.factory))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        object.__setattr__(self, "sizes", dict(self.sizes))
        try:
            json.dumps(self.kwargs)
        except TypeError as e:
            raise ConfigError(f"ModelSpec.kwargs must be JSON values (they are stored in run.json): {e}.") from None
        if not isinstance(self.adapter, str):
            raise ConfigError(f"ModelSpec.adapter={self.adapter!r} must be 'auto', 'gpt2', 'llama', 'none' or 'module:Class'.")
        if self.d_model is not None and (not isinstance(self.d_model, int) or self.d_model < 1):
            raise ConfigError(f"ModelSpec.d_model={self.d_model!r} must be a positive integer or None.")

    # ----------------------------------------------------------------- data

    def resolve(self, dims: dict[str, int]) -> "ModelSpec":
        """The spec with the task's sizes filled in (what the run key hashes)."""
        return replace(self, sizes={k: int(dims[k]) for k in SIZES if k in dims})

    def to_dict(self) -> dict:
        return {"kind": "foreign", "factory": self.factory, "kwargs": dict(self.kwargs), "adapter": self.adapter,
                "d_model": self.d_model, "sizes": dict(self.sizes)}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        d.pop("kind", None)
        known = {"factory", "kwargs", "adapter", "d_model", "sizes"}
        if set(d) - known:
            raise ConfigError(f"ModelSpec got unknown keys {sorted(set(d) - known)}; valid keys are {sorted(known)}.")
        return cls(**d)

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # ----------------------------------------------------------------- building

    def build_net(self) -> Any:
        """Call the factory (under the caller's RNG state) and return its module."""
        import torch

        if not self.sizes:
            raise ConfigError("ModelSpec has no task sizes; call spec.resolve(task.dims()) first.")
        fn = resolve_function(self.factory, "model factory")
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        sizes = {k: v for k, v in self.sizes.items() if takes_all or k in params}
        net = fn(**self.kwargs, **sizes)
        if not isinstance(net, torch.nn.Module):
            raise ConfigError(f"model factory {self.factory} returned {type(net).__name__}, not a torch.nn.Module.")
        return net

    def make_adapter(self, net: Any) -> Any:
        from clamp.model.adapters import ADAPTERS, Adapter, detect_adapter

        name = detect_adapter(net) if self.adapter == "auto" else self.adapter
        if ":" in name:
            cls = resolve(name, "adapter")
            if not (isinstance(cls, type) and issubclass(cls, Adapter)):
                raise ConfigError(f"ModelSpec.adapter={name!r} is not a clamp.model.adapters.Adapter subclass.")
            return cls()
        if name not in ADAPTERS:
            raise ConfigError(f"ModelSpec.adapter={name!r} is unknown; choose 'auto', {sorted(ADAPTERS)} or 'module:Class'.")
        return ADAPTERS[name]()

    def _info(self) -> dict:
        key = self.key()
        if key not in _INFO:
            from clamp.model.foreign_module import ForeignModel

            model = ForeignModel(self, [0])
            _INFO[key] = {"n_layers": model.n_layers, "n_heads": model.n_heads, "d_model": model.d_model,
                          "why_no_pattern": model.why_no_pattern}
        return _INFO[key]

    @property
    def n_layers(self) -> int:
        """Layers the adapter maps (0 without an adapter)."""
        return self._info()["n_layers"]

    @property
    def n_heads(self) -> int:
        return self._info()["n_heads"]


def hf_gpt2(*, n_layer: int = 2, n_head: int = 4, n_embd: int = 64, attn_implementation: str = "eager",
            adapter: str = "auto", **config: Any) -> ModelSpec:
    """A tiny Hugging Face GPT-2 built from a ``GPT2Config`` (MLPs, learned positions; no download).

    ``config`` holds any other ``GPT2Config`` field (``n_inner``, ``activation_function``, ...);
    ``vocab_size`` and ``n_positions`` come from the task.  Keep ``attn_implementation="eager"``
    for head-level interventions and metrics.

    Example:
        >>> hf_gpt2(n_layer=2, n_head=4, n_embd=64).kwargs["n_head"]
        4
    """
    kwargs = {"n_layer": n_layer, "n_head": n_head, "n_embd": n_embd, "attn_implementation": attn_implementation, **config}
    return ModelSpec(factory="clamp.model.adapters:gpt2_lm", kwargs=kwargs, adapter=adapter)


def hf_llama(*, num_hidden_layers: int = 2, num_attention_heads: int = 4, hidden_size: int = 64,
             intermediate_size: int = 128, num_key_value_heads: int | None = None, attn_implementation: str = "eager",
             adapter: str = "auto", **config: Any) -> ModelSpec:
    """A tiny Hugging Face Llama built from a ``LlamaConfig`` (RoPE, SwiGLU MLP, RMSNorm; no download).

    Example:
        >>> hf_llama(hidden_size=32, num_attention_heads=2).kwargs["num_key_value_heads"]
        2
    """
    kwargs = {"num_hidden_layers": num_hidden_layers, "num_attention_heads": num_attention_heads,
              "hidden_size": hidden_size, "intermediate_size": intermediate_size,
              "num_key_value_heads": num_key_value_heads or num_attention_heads,
              "attn_implementation": attn_implementation, **config}
    return ModelSpec(factory="clamp.model.adapters:llama_lm", kwargs=kwargs, adapter=adapter)


def model_from_dict(d: dict) -> Any:
    """A :class:`ModelSpec` or :class:`~clamp.model.transformer.ModelConfig` from its ``to_dict()``."""
    if d.get("kind") == "foreign":
        return ModelSpec.from_dict(d)
    from clamp.model.config import ModelConfig

    return ModelConfig.from_dict(d)


def is_foreign(cfg: Any) -> bool:
    return isinstance(cfg, ModelSpec)


def build_model(cfg: Any, seeds: Sequence[int]) -> Any:
    """The model for a resolved config: the packed built-in Transformer, or a one-run :class:`ForeignModel`."""
    if isinstance(cfg, ModelSpec):
        from clamp.model.foreign_module import ForeignModel

        return ForeignModel(cfg, seeds)
    from clamp.model.transformer import Transformer

    return Transformer(cfg, seeds)


def __getattr__(name: str) -> Any:
    """``ForeignModel`` (the torch side, :mod:`clamp.model.foreign_module`) is imported on first use: a study
    is loaded and checked without torch."""
    if name == "ForeignModel":
        from clamp.model.foreign_module import ForeignModel

        return ForeignModel
    raise AttributeError(f"module 'clamp.model.foreign' has no attribute {name!r}")

__all__ = ["ModelSpec", "ForeignModel", "hf_gpt2", "hf_llama", "model_from_dict", "build_model", "is_foreign"]  # noqa: F822 - ForeignModel loads on first use
