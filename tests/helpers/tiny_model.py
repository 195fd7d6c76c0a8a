"""A tiny user-written PyTorch transformer and its adapter: a foreign model the tests train and intervene on.

Found by import path (``"helpers.tiny_model:build_tiny"``) in this process and in spawned workers.
"""

from __future__ import annotations

import torch
from torch import nn

from clamp.model.adapters import Adapter
import clamp


class TinyAttention(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.h, self.qkv, self.out = h, nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D]
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.h, D // self.h).unbind(2)
        z, _ = clamp.attention(self, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None)
        return self.out(z.reshape(B, T, D))


class TinyBlock(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.ln, self.attn = nn.LayerNorm(d), TinyAttention(d, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.ln(x))


class TinyNet(nn.Module):
    def __init__(self, d_vocab: int, d_out: int, n_ctx: int, d_model: int, n_heads: int, n_layers: int) -> None:
        super().__init__()
        self.d_model, self.n_heads = d_model, n_heads
        self.embed, self.pos = nn.Embedding(d_vocab, d_model), nn.Parameter(torch.randn(n_ctx, d_model) * 0.1)
        self.blocks = nn.ModuleList(TinyBlock(d_model, n_heads) for _ in range(n_layers))
        self.unembed = nn.Linear(d_model, d_out)

    def forward(self, input_ids=None, inputs_embeds=None) -> torch.Tensor:
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.pos[: x.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.unembed(x)


def build_tiny(*, d_vocab: int, d_out: int, n_ctx: int, d_model: int = 16, n_heads: int = 2, n_layers: int = 2) -> nn.Module:
    return TinyNet(d_vocab, d_out, n_ctx, d_model, n_heads, n_layers)


class TinyAdapter(Adapter):
    def layers(self, net):
        return list(net.blocks)

    def attention(self, net, layer):
        return net.blocks[layer].attn

    def n_heads(self, net):
        return net.n_heads
