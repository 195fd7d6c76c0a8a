"""Initialisation schemes of the packed transformer, each parameter from its own random stream.

Why this file exists: the initial weights decide how long a run sits on the loss
plateau (docs/science.md §4: with Singh et al.'s initialisation clamp's copy arm
crosses at 1.2e5 sequences, with PyTorch's defaults at 2.0e5), so the scheme is
a model option (``ModelConfig.init``) and lives in one place.

Schemes:

``"torch"`` (the default, kept so that finished runs reproduce)
    PyTorch's ``nn.Linear`` defaults, U(±1/√fan_in) for weights and biases; token
    (label) embedding N(0, 1); learned positions N(0, 0.02²); LayerNorm gain 1,
    bias 0.  All parameters of a run come from ONE generator seeded with the run's
    seed, in a fixed order (see ``Transformer._init_run``), so adding a label
    shifts every later draw.

``"singh2024"`` (the authors' code, aadityasingh/icl-dynamics ``models.py``)
    token (label) embedding ``0.02 * truncated_normal(-2, 2)``; every linear map
    (item embedding, q/k/v, output projection, MLP, unembedding) LeCun normal,
    i.e. ``truncated_normal(-2, 2) * s`` with ``s = 1 / (√fan_in · 0.8796…)`` so that
    the standard deviation AFTER truncation is 1/√fan_in (``jax.nn.initializers.
    lecun_normal``), and zero biases; LayerNorm gain 1, bias 0 (equinox's).  Learned
    positions (the authors use RoPE) get the embedding rule.  Every parameter is
    drawn from its own generator, seeded from (run seed, parameter name), as the
    authors split their JAX keys per parameter: changing one part of a configuration
    (the number of labels, say) leaves every other parameter's initial value
    bit-identical.  A packed run ``r`` is initialised exactly as a single-run model
    with that seed.

The authors' RoPE rotates interleaved pairs of head dimensions, clamp's the two
halves: the same function up to a fixed permutation of the head dimensions of q
and k, which i.i.d. initial weights make indistinguishable, so it is not a
difference.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from clamp.errors import ConfigError
from clamp.model.layers import RunLayerNorm, RunLinear
from clamp.rng import stream

from clamp.model.config import INIT_SCHEMES

EMBED_STD = 0.02  # the authors' emb_init_scale: the scale of a standard normal truncated at ±2
TRUNC = 2.0  # truncation, in units of the underlying normal's scale
TRUNC_STD = 0.8796256610342398  # standard deviation of a standard normal truncated to [-2, 2]


def truncated_normal(shape: tuple[int, ...], scale: float, gen: torch.Generator) -> Tensor:
    """``scale`` times a standard normal truncated to [-2, 2] (``jax.random.truncated_normal``), float32.

    Inverse-CDF sampling in float64 (the same method as ``torch.nn.init.trunc_normal_``,
    written out so that a torch release cannot change the numbers).

    Example:
        >>> x = truncated_normal((1000,), 0.5, torch.Generator().manual_seed(0))
        >>> bool(x.abs().max() <= 1.0)
        True
    """
    lo = 0.5 * (1 + math.erf(-TRUNC / math.sqrt(2)))
    hi = 0.5 * (1 + math.erf(TRUNC / math.sqrt(2)))
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    x = torch.special.erfinv(2 * (lo + u * (hi - lo)) - 1) * math.sqrt(2)
    return (x.clamp(-TRUNC, TRUNC) * scale).to(torch.float32)


def lecun_normal(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> Tensor:
    """Truncated normal whose standard deviation after truncation is ``1/sqrt(fan_in)``."""
    return truncated_normal(shape, 1.0 / (math.sqrt(max(fan_in, 1)) * TRUNC_STD), gen)


Rule = Callable[[tuple[int, ...], torch.Generator], Tensor]


def singh2024_rules(model: nn.Module) -> dict[str, Rule]:
    """Parameter name -> how to draw one run's slice of it (``shape`` without the run axis)."""
    rules: dict[str, Rule] = {
        "token_embed": lambda shape, gen: truncated_normal(shape, EMBED_STD, gen),
        "pos_embed": lambda shape, gen: truncated_normal(shape, EMBED_STD, gen),
    }
    for prefix, module in model.named_modules():
        if isinstance(module, RunLinear):
            rules[f"{prefix}.weight"] = lambda shape, gen, fan_in=module.d_in: lecun_normal(shape, fan_in, gen)
            rules[f"{prefix}.bias"] = lambda shape, gen: torch.zeros(shape)
        elif isinstance(module, RunLayerNorm):
            rules[f"{prefix}.weight"] = lambda shape, gen: torch.ones(shape)
            rules[f"{prefix}.bias"] = lambda shape, gen: torch.zeros(shape)
        if getattr(module, "smear", None) is not None:  # smeared keys start as plain keys, as under "torch"
            rules[f"{prefix}.smear"] = lambda shape, gen: torch.zeros(shape)
    return rules


@torch.no_grad()
def init_run(model: nn.Module, r: int, seed: int) -> None:
    """Initialise run ``r`` of ``model`` under ``model.cfg.init`` (any scheme but "torch"), from ``seed``.

    Each parameter's slice for run ``r`` is drawn from :func:`stream` ``(seed, name)``.
    A parameter without a rule is an error, so that a new parameter can never be left
    uninitialised or quietly drawn from a shared stream.
    """
    if model.cfg.init != "singh2024":
        raise ConfigError(f"ModelConfig.init={model.cfg.init!r} is unknown; choose one of {INIT_SCHEMES}.")
    rules = singh2024_rules(model)
    for name, param in model.named_parameters():
        rule = rules.get(name)
        if rule is None:
            raise ConfigError(
                f"ModelConfig.init='singh2024' has no rule for parameter {name!r}; add one to "
                "clamp.model.init.singh2024_rules (or use init='torch')."
            )
        param.data[r] = rule(tuple(param.shape[1:]), stream(seed, name)).to(param.dtype)
