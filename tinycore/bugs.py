"""Broken variants of tinycore modules, each carrying one bug that has shipped in real code.

Chapter 17 ("find the bug") trains and tests them; `tinycore.checks.debug` uses them as the zoo
its checkers run a learner's tests against. Each class changes exactly one thing of the tinycore
module it subclasses, marked `# BUG:`; `swap_in` puts one into a built model with the same weights.
These are teaching material: never use them for anything else.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import MultiHeadSelfAttention, merge_heads
from .norms import LayerNorm

__all__ = ["SqrtDModelAttention", "SequenceLayerNorm", "OffByOneMaskAttention", "CacheWithoutOffsetAttention",
           "swap_in"]


class SqrtDModelAttention(MultiHeadSelfAttention):
    """Scores divided by sqrt(D), the model width, instead of sqrt(Dh), the head width."""

    def weights(self, q, k, mask=None) -> torch.Tensor:
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_model)  # BUG: should be sqrt(self.d_head); (B, H, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1)  # (B, H, T, T)

    def attend(self, q, k, v, mask=None, attn_bias=None) -> torch.Tensor:
        out = self.weights(q, k, mask) @ v  # (B, H, T, T) @ (B, H, T, Dh) -> (B, H, T, Dh)
        return self.output_proj(merge_heads(out))  # (B, H, T, Dh) -> (B, T, D)

    def attention_weights(self, x, mask=None, token_positions=None, attn_bias=None) -> torch.Tensor:
        q, k, _ = self.qkv(x, token_positions)
        return self.weights(q, k, self.full_mask(mask, *x.shape[:2], x.device))  # (B, H, T, T)


class SequenceLayerNorm(LayerNorm):
    """Mean and variance over the tokens and the features of a sequence, as nn.LayerNorm((T, D)) would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        mean = h.mean(dim=(-2, -1), keepdim=True)  # BUG: should be dim=-1 only; (B, T, D) -> (B, 1, 1)
        var = h.var(dim=(-2, -1), keepdim=True, unbiased=False)  # (B, T, D) -> (B, 1, 1)
        out = (h - mean) * torch.rsqrt(var + self.eps) * self.weight
        return (out if self.bias is None else out + self.bias).to(x.dtype)


class OffByOneMaskAttention(MultiHeadSelfAttention):
    """A causal mask one diagonal too wide: position i also sees position i + 1."""

    def full_mask(self, mask, batch: int, t: int, device, t_k: int | None = None):
        t_k = t if t_k is None else t_k
        causal = torch.ones(t, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t + 1)  # BUG: + 1
        return causal if mask is None else mask & causal


class CacheWithoutOffsetAttention(MultiHeadSelfAttention):
    """Cached decoding that numbers the new tokens from 0 instead of from the cache's length."""

    def forward(self, x, mask=None, token_positions=None, attn_bias=None, cache=None) -> torch.Tensor:
        if cache is not None and token_positions is not None:
            token_positions = torch.arange(x.shape[1], device=x.device)  # BUG: should start at cache.length
        return super().forward(x, mask, token_positions, attn_bias, cache)


def swap_in(model: nn.Module, kind: str, cls: type) -> nn.Module:
    """Replace every `kind` ("attn" or "norm") module of a TransformerLM by `cls`, keeping the weights.

    The model is changed in place and returned.
    """
    if kind not in ("attn", "norm"):
        raise ValueError(f"kind must be 'attn' or 'norm', got {kind!r}")
    for block in model.layers:
        names = ("attn",) if kind == "attn" else ("ln1", "ln2")
        for name in names:
            old = getattr(block, name)
            new = cls.__new__(cls)  # the same module, re-classed: same parameters, same buffers, same settings
            new.__dict__.update(old.__dict__)
            setattr(block, name, new)
    if kind == "norm":
        new = cls.__new__(cls)
        new.__dict__.update(model.ln_final.__dict__)
        model.ln_final = new
    return model
