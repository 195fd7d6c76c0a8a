"""The model: a packed, hookable attention transformer and its compiled kernels.

Why this package exists: training with interventions needs a model whose every
activation worth clamping passes through a named hook point, and whose seeds
are packed on a run axis so several runs train as one.

What enters: a :class:`ModelConfig` (resolved against a task's dimensions).
What leaves: a :class:`Transformer` with hook points named once
(``blocks.{l}.attn.hook_pattern`` ...), returning logits for every position.

Modules: :mod:`.transformer` (config, blocks, hook points), :mod:`.shortattn`
(fused short-context attention with hand-written gradients), :mod:`.layernorm`
(compiled LayerNorm), :mod:`.init` (initialisation schemes, one random stream per parameter),
:mod:`.native` (C kernels built on first use, torch fallback).
"""

from clamp.model.config import ModelConfig  # torch-free; Transformer (torch) is imported on first use


def __getattr__(name: str):
    if name == "Transformer":
        from clamp.model.transformer import Transformer

        return Transformer
    raise AttributeError(f"module 'clamp.model' has no attribute {name!r}")

__all__ = ["ModelConfig", "Transformer"]
