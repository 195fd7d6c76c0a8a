"""A tiny causal transformer with named hook points and a run axis.

Why this file exists: every activation a researcher may read or clamp passes
through a named identity module (a :class:`HookPoint`), and every parameter and
activation carries a leading *run* axis ``R`` so that one model object trains R
independent seeds at the cost of one.  Run ``r`` of a packed model is
initialised from its own seed exactly as a single-run model with that seed.

Shapes (R runs, B sequences, T positions, H heads, dh head dim, D d_model,
C output classes)::

    hook_embed                      [R, B, T, D]   item/token embedding (+ learned positions)
    blocks.{l}.hook_resid_pre       [R, B, T, D]
    blocks.{l}.attn.hook_q          [R, B, T, H, dh]  before RoPE
    blocks.{l}.attn.hook_k          [R, B, T, H, dh]  before RoPE
    blocks.{l}.attn.hook_v          [R, B, T, H, dh]
    blocks.{l}.attn.hook_attn_scores [R, B, H, Tq, Tk] scaled, causal-masked (-inf), pre-softmax
    blocks.{l}.attn.hook_pattern    [R, B, H, Tq, Tk] rows sum to 1
    blocks.{l}.attn.hook_z          [R, B, T, H, dh]  per-head output before W_O
    blocks.{l}.hook_attn_out        [R, B, T, D]
    blocks.{l}.hook_resid_mid       [R, B, T, D]   only with MLPs
    blocks.{l}.hook_mlp_out         [R, B, T, D]   only with MLPs
    blocks.{l}.hook_resid_post      [R, B, T, D]
    hook_logits                     [R, B, T, C]
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _nn_module

import clamp.model.init as init_schemes
import clamp.model.shortattn as shortattn
from clamp.errors import ConfigError
from clamp.model.config import ModelConfig, is_pattern_hook
from clamp.model.layers import HookPoint, RunLayerNorm, RunLinear, forward_with_cache, rope, rope_tables
from clamp.tasks.batch import Batch



# Attention over short contexts runs in a "heads-last" layout (see clamp.model.shortattn):
# with T ~ 5 the batched-matmul path spends its time on thousands of tiny
# matrices, while a broadcast multiply-and-sum over a contiguous trailing
# R*B*H axis vectorises well.  Longer contexts use batched matmuls.  Hook
# tensors have the documented shapes either way (as permuted views).
HEADS_LAST_MAX_T = 32


class Attention(nn.Module):
    """Multi-head causal self-attention, manual path so the pattern is a tensor."""

    def __init__(self, cfg: ModelConfig, n_runs: int) -> None:
        super().__init__()
        self.cfg = cfg
        H, dh, D = cfg.n_heads, cfg.d_head_resolved, cfg.d_model
        self.W_Q = RunLinear(n_runs, D, H * dh, bias=False)
        self.W_K = RunLinear(n_runs, D, H * dh, bias=False)
        self.W_V = RunLinear(n_runs, D, H * dh, bias=False)
        self.W_O = RunLinear(n_runs, H * dh, D, bias=False)
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        self._tables: dict[tuple, tuple[Tensor, shortattn.Rotation | None]] = {}
        self.capture: dict[str, Tensor] | None = None  # set by Transformer.run_with_cache: patterns land here
        # Smeared keys (Olsson et al. 2022): key_t <- key_t + w_h (key_{t-1} - key_t), a learned weight per
        # run and head, initialised to 0 (no random draw, so the other parameters' init is unchanged).
        self.smear = nn.Parameter(torch.zeros(n_runs, H)) if cfg.smear_keys else None

    def split_heads(self, x: Tensor) -> Tensor:  # [R, B, T, H*dh] -> [R, B, T, H, dh]
        return x.view(*x.shape[:-1], self.cfg.n_heads, self.cfg.d_head_resolved)

    def _constants(self, T: int, device: torch.device) -> tuple[Tensor, shortattn.Rotation | None]:
        """Causal mask (0 / -inf) ``[Tq, Tk, 1]`` and the RoPE rotation (None without RoPE), cached."""
        key = (T, device)
        if key not in self._tables:
            neg = torch.full((T, T), float("-inf"), device=device).triu(1)[:, :, None]
            rot = None
            if self.cfg.positions == "rope":
                rot = shortattn.rope_rotation(*rope_tables(T, self.cfg.d_head_resolved, self.cfg.rope_base, device))
            self._tables[key] = (neg, rot)
        return self._tables[key]

    def forward(self, x: Tensor) -> Tensor:  # x: normalised residual [R, B, T, D]
        R, B, T, D = x.shape
        H, dh = self.cfg.n_heads, self.cfg.d_head_resolved
        # One matmul for q, k and v: their weights side by side.
        w = torch.cat([self.W_Q.weight, self.W_K.weight, self.W_V.weight], dim=2)  # (R, D, 3*H*dh)
        qkv = torch.bmm(x.reshape(R, B * T, D), w).view(R, B, T, 3, H, dh)
        if self.smear is not None:
            qkv = self._smear_keys(qkv)
        q, k, v = qkv.unbind(3)  # views
        hq, hk, hv = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if T > HEADS_LAST_MAX_T:
            z = self._long(hq, hk, hv)
        elif hq is q and hk is k and hv is v and self._unwatched() and shortattn.fused_available(qkv):
            neg, rot = self._constants(T, qkv.device)
            z, p = shortattn.fused_attention(qkv, rot, 1.0 / math.sqrt(dh), neg)
            if self.capture is not None:  # the pattern hook_pattern would have seen (the same numbers)
                self.capture["pattern"] = p.view(T, T, R, B, H).permute(2, 3, 4, 0, 1)
        elif hq is q and hk is k and hv is v:
            z = self._short(qkv, (None, None, None))
        else:  # an intervention replaced one: take all three from the hooks, so that their gradients
            # reach the projection through one path (the unbind) instead of two that must be added
            z = self._short(qkv, (hq, hk, hv))
        z = self.hook_z(z)
        return self.W_O(z.reshape(R, B, T, -1))

    def _smear_keys(self, qkv: Tensor) -> Tensor:
        """``qkv`` ``[R, B, T, 3, H, dh]`` with each key mixed with the previous position's key (position 0 kept).

        ``hook_k`` then sees the smeared keys, the ones attention uses.
        """
        q, k, v = qkv.unbind(3)
        prev = torch.cat([k[:, :, :1], k[:, :, :-1]], dim=2)  # key of position t-1 (t=0: itself)
        k = k + self.smear[:, None, None, :, None] * (prev - k)
        return torch.stack([q, k, v], dim=3)

    def _unwatched(self) -> bool:
        """True when no hook (forward or backward), and no nnsight controller, sits on the scores or the
        pattern (nor on q, k, v), and no global module hook is registered.

        The fused path (clamp.model.shortattn.FusedAttention) then computes the same numbers
        without handing those two tensors to anyone; a watched layer takes the step path, so
        that a backward hook on ``hook_pattern`` fires as it would on any other module.
        """
        if (_nn_module._global_forward_hooks or _nn_module._global_forward_pre_hooks
                or _nn_module._global_backward_hooks or _nn_module._global_backward_pre_hooks):
            return False
        for m in (self.hook_q, self.hook_k, self.hook_v, self.hook_attn_scores, self.hook_pattern):
            if (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                    or "forward" in m.__dict__):
                return False
        return True

    def _short(self, qkv: Tensor, replaced: tuple) -> Tensor:
        """Heads-last attention (clamp.model.shortattn) from the fused projection ``[R, B, T, 3, H, dh]``, with the
        ``replaced`` q, k, v (each ``[R, B, T, H, dh]`` or None) in place of its slices; returns z ``[R, B, T, H, dh]``."""
        R, B, T, _, H, dh = qkv.shape
        N = R * B * H
        neg, rot = self._constants(T, qkv.device)
        s, vT = shortattn.qkv_scores(qkv, rot, 1.0 / math.sqrt(dh), neg, replaced)  # (Tq, Tk, N), (Tk, dh, N)
        # Hook tensors are views in the documented layout; an intervention's replacement is copied back.
        s = self.hook_attn_scores(s.view(T, T, R, B, H).permute(2, 3, 4, 0, 1))
        p = shortattn.softmax(s.permute(3, 4, 0, 1, 2).reshape(T, T, N))
        p = self.hook_pattern(p.view(T, T, R, B, H).permute(2, 3, 4, 0, 1))
        if self.capture is not None:
            self.capture["pattern"] = p
        return shortattn.mix_heads(p.permute(3, 4, 0, 1, 2).reshape(T, T, N), vT, (R, B, T, H, dh))

    def _long(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Batched-matmul attention; returns z ``[R, B, T, H, dh]``."""
        T = q.shape[2]
        if self.cfg.positions == "rope":
            q, k = rope(q, self.cfg.rope_base), rope(k, self.cfg.rope_base)
        s = (q.permute(0, 1, 3, 2, 4) @ k.permute(0, 1, 3, 4, 2)) * (1.0 / math.sqrt(self.cfg.d_head_resolved))
        mask = torch.ones(T, T, dtype=torch.bool, device=s.device).triu(1)
        s = self.hook_attn_scores(s.masked_fill(mask, float("-inf")))  # (R, B, H, Tq, Tk)
        pattern = self.hook_pattern(torch.softmax(s, dim=-1))
        return (pattern @ v.permute(0, 1, 3, 2, 4)).permute(0, 1, 3, 2, 4)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, n_runs: int) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.hook_resid_pre = HookPoint()
        self.ln1 = RunLayerNorm(n_runs, D) if cfg.layernorm else nn.Identity()
        self.attn = Attention(cfg, n_runs)
        self.hook_attn_out = HookPoint()
        if not cfg.attn_only:
            d_mlp = cfg.d_mlp or 4 * D
            self.hook_resid_mid = HookPoint()
            self.ln2 = RunLayerNorm(n_runs, D) if cfg.layernorm else nn.Identity()
            self.mlp_in = RunLinear(n_runs, D, d_mlp, bias=True)
            self.mlp_out = RunLinear(n_runs, d_mlp, D, bias=True)
            self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        x = self.hook_resid_pre(x)
        x = x + self.hook_attn_out(self.attn(self.ln1(x)))
        if not self.cfg.attn_only:
            x = self.hook_resid_mid(x)
            x = x + self.hook_mlp_out(self.mlp_out(F.gelu(self.mlp_in(self.ln2(x)))))
        return self.hook_resid_post(x)


class Transformer(nn.Module):
    """The packed model: R runs of one architecture.

    Args:
        cfg: the architecture, with the task sizes resolved (see :meth:`ModelConfig.resolve`).
        seeds: one initialisation seed per run; ``len(seeds)`` is R.

    Example:
        >>> cfg = ModelConfig(n_layers=1, n_heads=2, d_model=8, d_in=4, d_vocab=3, d_out=3, n_ctx=5)
        >>> Transformer(cfg, seeds=[0, 1]).n_runs
        2
    """

    def __init__(self, cfg: ModelConfig, seeds: Sequence[int]) -> None:
        super().__init__()
        missing = [n for n in ("d_in", "d_vocab", "d_out", "n_ctx") if getattr(cfg, n) is None]
        if missing:
            raise ConfigError(f"ModelConfig has unresolved sizes {missing}; call cfg.resolve(task.dims()) first.")
        if len(seeds) < 1:
            raise ConfigError("Transformer needs at least one seed (one run).")
        self.cfg = cfg
        self.seeds = [int(s) for s in seeds]
        R, D = len(seeds), cfg.d_model
        self.item_embed = RunLinear(R, cfg.d_in, D, bias=True) if cfg.d_in else None
        self.token_embed = nn.Parameter(torch.empty(R, max(cfg.d_vocab, 1), D))
        self.pos_embed = nn.Parameter(torch.empty(R, cfg.n_ctx, D)) if cfg.positions == "learned" else None
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(Block(cfg, R) for _ in range(cfg.n_layers))
        self.ln_final = RunLayerNorm(R, D) if cfg.layernorm else nn.Identity()
        self.unembed = RunLinear(R, D, cfg.d_out, bias=True)
        self.hook_logits = HookPoint()
        for r, seed in enumerate(self.seeds):
            self._init_run(r, seed)

    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    @torch.no_grad()
    def _init_run(self, r: int, seed: int) -> None:
        if self.cfg.init != "torch":  # per-parameter streams (clamp.model.init)
            return init_schemes.init_run(self, r, seed)
        gen = torch.Generator().manual_seed(seed)
        # Fixed order, independent of R: token embedding, positions, then modules in registration order.
        self.token_embed.data[r] = torch.randn(self.token_embed.shape[1:], generator=gen)
        if self.pos_embed is not None:
            self.pos_embed.data[r] = torch.randn(self.pos_embed.shape[1:], generator=gen) * 0.02
        for module in self.modules():
            if isinstance(module, (RunLinear, RunLayerNorm)):
                module.init_run(r, gen)

    def embed(self, batch: Batch) -> Tensor:
        """Input embedding ``[R, B, T, D]`` (before ``hook_embed``)."""
        R = self.n_runs
        if self.item_embed is not None and batch.item_table is not None:
            x = self._embed_from_table(batch)
        else:
            idx = torch.arange(R, device=batch.tokens.device)[:, None, None]
            x = self.token_embed[idx, batch.tokens]  # (R, B, T, D)
            if self.item_embed is not None and batch.items is not None:
                x = torch.where(batch.item_mask[..., None], self.item_embed(batch.items), x)
        if self.pos_embed is not None:
            x = x + self.pos_embed[:, None, : x.shape[2]]
        return x

    def _embed_from_table(self, batch: Batch) -> Tensor:
        """Embed the batch's item table once per run, then look every position up in it.

        The rows are the token embeddings followed by the embedded item vectors
        ([R, V_tokens + V_items, D]); a position's row is its token id, or
        ``V_tokens`` + its item id where it holds an item.
        """
        R, D = self.n_runs, self.cfg.d_model
        n_tok = self.token_embed.shape[1]
        lin = self.item_embed
        table = batch.item_table.to(lin.weight.dtype)  # (V, d_in), shared by every run
        items = torch.baddbmm(lin.bias.unsqueeze(1), table.expand(R, *table.shape), lin.weight)  # (R, V, D)
        rows = torch.cat([self.token_embed, items], dim=1).view(-1, D)  # (R * (V_tokens + V), D)
        ids = torch.where(batch.item_mask, batch.item_ids + n_tok, batch.tokens)  # (R, B, T)
        offset = torch.arange(R, device=ids.device) * (n_tok + table.shape[0])
        return F.embedding(ids + offset[:, None, None], rows)

    def forward(self, batch: Batch) -> Tensor:
        """Logits ``[R, B, T, C]`` at every position."""
        if batch.tokens.shape[0] != self.n_runs:
            raise ValueError(f"batch has {batch.tokens.shape[0]} runs, model has {self.n_runs}")
        x = self.hook_embed(self.embed(batch))
        for block in self.blocks:
            x = block(x)
        return self.hook_logits(self.unembed(self.ln_final(x)))

    def hook_names(self) -> list[str]:
        """Canonical dotted names of every hook point, in forward order."""
        return [name for name, m in self.named_modules() if isinstance(m, HookPoint)]

    def hook_point(self, name: str) -> HookPoint:
        module = dict(self.named_modules()).get(name)
        if not isinstance(module, HookPoint):
            raise KeyError(name)
        return module

    def run_with_cache(self, batch: Batch, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward pass that also returns the named activations, detached.

        Example:
            >>> # logits, cache = model.run_with_cache(batch, ["blocks.1.attn.hook_pattern"])
        """
        patterns = {n: self.blocks[int(n.split(".")[1])].attn for n in names if is_pattern_hook(n, len(self.blocks))}
        if len(patterns) == len(names) and batch.tokens.shape[2] <= HEADS_LAST_MAX_T:
            # Attention patterns only: have the layers hand them over instead of hooking them,
            # so that the layers keep their fused path (the numbers are the same).
            try:
                for attn in patterns.values():
                    attn.capture = {}
                logits = self(batch)
                return logits, {n: attn.capture["pattern"].detach() for n, attn in patterns.items()}
            finally:
                for attn in patterns.values():
                    attn.capture = None
        return forward_with_cache(self, batch, names)

    def state_for_run(self, r: int) -> dict[str, Tensor]:
        """Parameters of run ``r`` alone (leading axis dropped)."""
        return {k: v[r].detach().clone() for k, v in self.state_dict().items()}
