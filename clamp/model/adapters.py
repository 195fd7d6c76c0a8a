"""Architecture adapters: clamp's canonical hook names on a model clamp did not write.

Why this file exists: the head-level interventions and metrics (Singh et al.'s
knockout, previous-token and match clamps; induction strength, previous-token
score) address activations by clamp's canonical names
(``blocks.{l}.attn.hook_pattern``, ``hook_v``, ``hook_z``, ``blocks.{l}.hook_resid_post``
...).  An adapter says where those activations live in one model family, and
:class:`~clamp.model.foreign.ForeignModel` routes them through named hook points
(the same :class:`~clamp.model.transformer.HookPoint` the built-in model uses), so
the interventions, their validation and the metrics run unchanged.

How the attention internals are reached: Hugging Face attention modules call an
*attention function* chosen by ``config._attn_implementation``.  For a model built
with ``attn_implementation="eager"`` the adapter switches it to ``"clamp_eager"``
(registered here with transformers' ``AttentionInterface``): the same operations as
transformers' eager attention, in the same order (so the logits are bit-identical),
with q, k, v, the scores, the pattern and the per-head output passed through the
layer's hook points.  A model built with a fused kernel (``"sdpa"``, flash) never
materialises the pattern; its attention-internal names are then absent and an
intervention naming them is rejected before training, with the fix (eager attention).

Layouts (one run, so the run axis R is 1), as for the built-in model::

    blocks.{l}.hook_resid_pre / hook_attn_out / hook_mlp_out / hook_resid_post  [1, B, T, D]
    blocks.{l}.attn.hook_q / hook_k / hook_v / hook_z                            [1, B, T, H, dh]
    blocks.{l}.attn.hook_attn_scores / hook_pattern                              [1, B, H, Tq, Tk]

Differences from the built-in model: Llama's ``hook_q``/``hook_k`` are after RoPE
(transformers applies it before the attention function); masked scores hold the
additive mask's most negative float rather than -inf (the pattern is exactly 0 there
either way); grouped-query k/v are shown repeated to one per query head.

A user adapter for another family is a small class (see :class:`Adapter`): say which
modules are the layers (and, optionally, their attention and MLP), how many heads
there are, and have the attention call :func:`attention` (or be a transformers
attention module, which does so through ``"clamp_eager"``)::

    class MyAdapter(clamp.Adapter):
        def layers(self, net): return list(net.blocks)
        def attention(self, net, layer): return net.blocks[layer].attn   # its forward calls clamp.attention(...)
        def n_heads(self, net): return net.n_heads
        def d_model(self, net): return net.d_model

    clamp.ModelSpec(factory="mypkg.models:build", adapter="mypkg.models:MyAdapter")
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

CLAMP_EAGER = "clamp_eager"
EAGER_FIX = "build it with attn_implementation='eager' (e.g. clamp.hf_gpt2(..., attn_implementation='eager'))"


# --------------------------------------------------------------------------- the attention function


def _repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """transformers' ``repeat_kv``: ``[B, Hkv, T, dh]`` -> ``[B, Hkv * n_rep, T, dh]``."""
    if n_rep == 1:
        return x
    B, H, T, dh = x.shape
    return x[:, :, None, :, :].expand(B, H, n_rep, T, dh).reshape(B, H * n_rep, T, dh)


def attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
              scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[Tensor, Tensor]:
    """Eager attention with clamp's hook points: transformers' attention-function signature.

    ``query``/``key``/``value`` are ``[B, H, T, dh]`` (k/v may have fewer heads: grouped
    query attention), ``attention_mask`` an additive float mask ``[B, 1, Tq, Tk]`` or None
    (then causal masking is applied here).  Returns ``(z [B, T, H, dh], pattern [B, H, Tq, Tk])``.
    The operations are transformers' eager attention (GPT-2 and Llama), so without an
    intervention the result is bit-identical to ``attn_implementation="eager"``.  A user
    module's attention calls it the same way; the hooks are those the adapter attached to
    ``module`` (none: plain eager attention).

    Example:
        >>> q = torch.randn(1, 2, 3, 4)
        >>> z, p = attention(nn.Identity(), q, q, q, None)
        >>> z.shape, p.shape
        (torch.Size([1, 3, 2, 4]), torch.Size([1, 2, 3, 3]))
    """
    hooks = module.__dict__.get("_clamp_attn")  # an _AttnHooks, set by the adapter (not a registered submodule)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    n_rep = query.shape[1] // key.shape[1]
    key, value = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
    if hooks is not None:
        query = hooks.hook_q(query.transpose(1, 2)[None])[0].transpose(1, 2)
        key = hooks.hook_k(key.transpose(1, 2)[None])[0].transpose(1, 2)
        value = hooks.hook_v(value.transpose(1, 2)[None])[0].transpose(1, 2)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, Tq, Tk)
    if attention_mask is not None:
        scores = scores + attention_mask
    else:
        T, S = scores.shape[-2:]
        causal = torch.ones(T, S, dtype=torch.bool, device=scores.device).triu(S - T + 1)
        scores = scores.masked_fill(causal, float("-inf"))
    if hooks is not None:
        scores = hooks.hook_attn_scores(scores[None])[0]
    pattern = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if hooks is not None:
        pattern = hooks.hook_pattern(pattern[None])[0]
        if hooks.capture is not None:
            hooks.capture["pattern"] = pattern[None]
    mixed = nn.functional.dropout(pattern, p=dropout, training=module.training)
    z = torch.matmul(mixed, value).transpose(1, 2)  # (B, T, H, dh)
    if hooks is not None:
        z = hooks.hook_z(z[None])[0]
    return z.contiguous(), pattern


def register_clamp_eager() -> None:
    """Register :func:`attention` with transformers as ``"clamp_eager"`` (with the eager mask); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask

    AttentionInterface.register(CLAMP_EAGER, attention)
    if CLAMP_EAGER not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(CLAMP_EAGER, eager_mask)


# --------------------------------------------------------------------------- adapters


class Adapter:
    """Where clamp's canonical activations live in one model family (subclass to add a family).

    Override :meth:`layers` (the residual blocks, in order: their input is
    ``hook_resid_pre``, their output ``hook_resid_post``), :meth:`n_heads` and
    :meth:`d_model`; optionally :meth:`attention` (a module per layer whose forward
    calls :func:`attention`: its q/k/v/scores/pattern/z become the ``blocks.{l}.attn.*``
    names, its output ``hook_attn_out``) and :meth:`mlp` (its output ``hook_mlp_out``);
    :meth:`prepare` may switch the model to :func:`attention` and return why the
    pattern cannot be materialised (None when it can).
    """

    family = "user"

    def layers(self, net: nn.Module) -> Sequence[nn.Module]:
        return []

    def attention(self, net: nn.Module, layer: int) -> nn.Module | None:
        return None

    def mlp(self, net: nn.Module, layer: int) -> nn.Module | None:
        return None

    def n_heads(self, net: nn.Module) -> int:
        return 0

    def d_model(self, net: nn.Module) -> int | None:
        emb = net.get_input_embeddings() if hasattr(net, "get_input_embeddings") else None
        return getattr(emb, "embedding_dim", None) or getattr(net, "d_model", None)

    def prepare(self, net: nn.Module) -> str | None:
        """Make the attention call :func:`attention`; return why the pattern is not materialised, or None."""
        return None


class _HFAdapter(Adapter):
    """Shared by the Hugging Face families: switch eager attention to ``clamp_eager``."""

    def n_heads(self, net: nn.Module) -> int:
        return int(net.config.num_attention_heads)

    def d_model(self, net: nn.Module) -> int | None:
        return int(net.config.hidden_size)

    def prepare(self, net: nn.Module) -> str | None:
        impl = net.config._attn_implementation
        if impl == CLAMP_EAGER:
            return None
        if impl != "eager":
            return (f"this {self.family} model uses attn_implementation={impl!r}, a fused kernel that never "
                    f"materialises the attention pattern (nor q/k/v/scores/z per head); {EAGER_FIX}")
        if getattr(net.config, "reorder_and_upcast_attn", False):
            return f"reorder_and_upcast_attn=True takes a separate attention path; build the {self.family} model without it"
        register_clamp_eager()
        for m in net.modules():  # every submodule's config (usually one shared object)
            cfg = getattr(m, "config", None)
            if cfg is not None and getattr(cfg, "_attn_implementation", None) == "eager":
                cfg._attn_implementation = CLAMP_EAGER
        return None


class GPT2Adapter(_HFAdapter):
    """``GPT2LMHeadModel``: blocks ``transformer.h``, attention ``.attn``, MLP ``.mlp``."""

    family = "gpt2"

    def _body(self, net: nn.Module) -> nn.Module:
        return net.transformer if hasattr(net, "transformer") else net

    def layers(self, net: nn.Module) -> Sequence[nn.Module]:
        return list(self._body(net).h)

    def attention(self, net: nn.Module, layer: int) -> nn.Module | None:
        return self._body(net).h[layer].attn

    def mlp(self, net: nn.Module, layer: int) -> nn.Module | None:
        return self._body(net).h[layer].mlp


class LlamaAdapter(_HFAdapter):
    """``LlamaForCausalLM``: blocks ``model.layers``, attention ``.self_attn``, MLP ``.mlp``."""

    family = "llama"

    def _body(self, net: nn.Module) -> nn.Module:
        return net.model if hasattr(net, "model") else net

    def layers(self, net: nn.Module) -> Sequence[nn.Module]:
        return list(self._body(net).layers)

    def attention(self, net: nn.Module, layer: int) -> nn.Module | None:
        return self._body(net).layers[layer].self_attn

    def mlp(self, net: nn.Module, layer: int) -> nn.Module | None:
        return self._body(net).layers[layer].mlp


ADAPTERS: dict[str, type[Adapter]] = {"gpt2": GPT2Adapter, "llama": LlamaAdapter, "none": Adapter}


def detect_adapter(net: nn.Module) -> str:
    """The adapter name for ``net`` by its class ("gpt2", "llama"), else "none"."""
    name = type(net).__name__
    if name.startswith("GPT2"):
        return "gpt2"
    if name.startswith("Llama"):
        return "llama"
    return "none"


# --------------------------------------------------------------------------- presets (factories)


def _dropout_free(kwargs: dict, keys: Sequence[str]) -> dict:
    """Dropout 0 unless asked; no special tokens (the vocabulary is the task's)."""
    out = dict(kwargs)
    for k in keys:
        out.setdefault(k, 0.0)
    for k in ("bos_token_id", "eos_token_id"):
        out.setdefault(k, None)
    return out


def _vocab(d_in: int, d_vocab: int, d_out: int) -> int:
    """The LM head's width: the labels for an item task, the token vocabulary otherwise."""
    from clamp.errors import ConfigError

    if not d_in and d_vocab != d_out:
        raise ConfigError(f"a causal LM predicts its own vocabulary, but this task has {d_vocab} input tokens and "
                          f"{d_out} output classes; use a task whose inputs and targets share one vocabulary")
    return d_out


def gpt2_lm(*, d_in: int, d_vocab: int, d_out: int, n_ctx: int, attn_implementation: str = "eager",
            **config: Any) -> nn.Module:
    """A freshly initialised ``GPT2LMHeadModel`` from a ``GPT2Config`` (no download); dropout off by default."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=_vocab(d_in, d_vocab, d_out), n_positions=max(n_ctx, config.pop("n_positions", 0)),
                     **_dropout_free(config, ("resid_pdrop", "embd_pdrop", "attn_pdrop")))
    cfg._attn_implementation = attn_implementation
    return GPT2LMHeadModel(cfg)


def llama_lm(*, d_in: int, d_vocab: int, d_out: int, n_ctx: int, attn_implementation: str = "eager",
             **config: Any) -> nn.Module:
    """A freshly initialised ``LlamaForCausalLM`` from a ``LlamaConfig`` (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=_vocab(d_in, d_vocab, d_out),
                      max_position_embeddings=max(n_ctx, config.pop("max_position_embeddings", 0)),
                      **_dropout_free(config, ("attention_dropout",)))
    cfg._attn_implementation = attn_implementation
    return LlamaForCausalLM(cfg)


__all__ = ["Adapter", "GPT2Adapter", "LlamaAdapter", "ADAPTERS", "attention", "detect_adapter", "gpt2_lm", "llama_lm",
           "register_clamp_eager", "CLAMP_EAGER", "EAGER_FIX"]
