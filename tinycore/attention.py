"""Scaled dot-product attention and multi-head attention (Vaswani et al., 2017, eq. 1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

d_k is the width of one query/key vector, i.e. the *head* width Dh inside multi-head attention,
not the model width D (dividing by sqrt(D) is a bug famous teaching code shipped: it shrinks
the scores by sqrt(H) and flattens every head's attention).

Conventions:
- Boolean masks mean True = may attend, as in `torch.nn.functional.scaled_dot_product_attention`
  (`torch.nn.MultiheadAttention` uses the opposite polarity). A mask broadcasts to (..., Tq, Tk).
- `bias` is a float tensor added to the scores before the softmax (relative position bias, ALiBi).
- A query row whose mask allows no key at all is *defined* to attend to nothing: its weights and
  its output are 0, and so are its gradients. (softmax over all -inf would be NaN, and the NaN would
  spread through the whole batch in the backward pass.)
- Heads are split head-major: feature h * Dh + j of a projection belongs to head h.
- `fused=True` (the modules' default) runs `F.scaled_dot_product_attention`; `fused=False` runs the
  from-scratch path below. Tests hold the two equal.

Deviations: no dropout; separate q/k/v projections (no fused QKV matrix); no biases unless asked
for (`bias=True`, as in GPT-2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .activations import softmax
from .layers import Linear

__all__ = [
    "causal_mask", "attention_weights", "scaled_dot_product_attention", "split_heads", "merge_heads",
    "MultiHeadAttention", "MultiHeadSelfAttention", "MultiHeadCrossAttention",
]


def causal_mask(t_q: int, t_k: int | None = None, device=None) -> torch.Tensor:
    """(Tq, Tk) bool, True where query i may attend key j: j <= i + (Tk - Tq).

    With Tk > Tq the queries are the *last* Tq positions (as when earlier keys are cached).
    """
    t_k = t_q if t_k is None else t_k
    if t_k < t_q:
        raise ValueError(f"causal_mask: {t_q} queries cannot be the last positions of only {t_k} keys")
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def _check_broadcast(t: torch.Tensor, target: tuple, message: str) -> None:
    """Raise ValueError(message) unless t broadcasts to exactly `target` (it may not enlarge it)."""
    try:
        if torch.broadcast_shapes(t.shape, target) == target:
            return
    except RuntimeError:
        pass
    raise ValueError(message)


def _check_inputs(q, k, v, mask, bias) -> None:
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same width d_k to be compared: q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must hold the same number of keys: k {tuple(k.shape)}, v {tuple(v.shape)}")
    scores_shape = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
    for name, t in (("mask", mask), ("bias", bias)):
        if t is None:
            continue
        if name == "mask" and t.dtype != torch.bool:
            raise TypeError(
                f"mask must be boolean (True = may attend), got {t.dtype}; pass additive float scores as bias="
            )
        _check_broadcast(t, scores_shape, f"{name} of shape {tuple(t.shape)} does not broadcast to the scores' "
                         f"shape (..., Tq, Tk) = {scores_shape}")


def attention_weights(q, k, mask=None, bias=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_k) + bias) over the keys, masked.

    Shapes: q (..., Tq, Dk), k (..., Tk, Dk), mask/bias broadcastable to (..., Tq, Tk) -> (..., Tq, Tk)
    """
    _check_inputs(q, k, k, mask, bias)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Tq, Dk) @ (..., Dk, Tk) -> (..., Tq, Tk)
    if bias is not None:
        scores = scores + bias
    if mask is None:
        return softmax(scores, dim=-1)
    any_allowed = mask.any(dim=-1, keepdim=True)  # (..., Tq, 1): does this query see any key?
    scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: masked keys get no weight
    scores = scores.masked_fill(~any_allowed, 0.0)  # a fully masked row: finite scores, weights zeroed next
    return softmax(scores, dim=-1) * any_allowed


def scaled_dot_product_attention(q, k, v, mask=None, bias=None, fused: bool = False) -> torch.Tensor:
    """Attention(q, k, v) with a boolean `mask` (True = may attend) and an additive float `bias`.

    Shapes: q (..., Tq, Dk), k (..., Tk, Dk), v (..., Tk, Dv) -> (..., Tq, Dv)
    """
    _check_inputs(q, k, v, mask, bias)
    if not fused:
        return attention_weights(q, k, mask, bias) @ v  # (..., Tq, Tk) @ (..., Tk, Dv) -> (..., Tq, Dv)
    attn_mask, any_allowed = bias, None
    if mask is not None:
        any_allowed = mask.any(dim=-1, keepdim=True)  # (..., Tq, 1)
        safe = mask | ~any_allowed  # let a fully masked row see everything; its output is zeroed below
        attn_mask = safe if bias is None else bias.masked_fill(~safe, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (..., Tq, Dv)
    return out if any_allowed is None else out.masked_fill(~any_allowed, 0.0)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, H * Dh) -> (B, H, T, Dh), head-major: features [h * Dh, (h + 1) * Dh) go to head h."""
    B, T, width = x.shape
    return x.view(B, T, num_heads, width // num_heads).transpose(1, 2)  # (B, T, H, Dh) -> (B, H, T, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, Dh) -> (B, T, H * Dh), the inverse of split_heads."""
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, H, Dh) -> (B, T, H * Dh): copies


class MultiHeadAttention(nn.Module):
    """Queries from `x`, keys and values from `context`, in H heads of width Dh = D / H.

    With `num_kv_heads` < H, groups of H / num_kv_heads query heads share one key/value head
    (grouped-query attention; 1 = multi-query attention), which shrinks the KV cache by that factor.

    Shapes: x (B, Tq, D), context (B, Tk, D_context) -> (B, Tq, D)
    """

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int | None = None,
                 d_context: int | None = None, fused: bool = True, bias: bool = False, device=None, dtype=None):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}")
        self.d_model, self.num_heads, self.num_kv_heads = d_model, num_heads, num_kv_heads
        self.d_head = d_model // num_heads
        self.d_context = d_model if d_context is None else d_context
        self.fused = fused  # True: F.scaled_dot_product_attention; False: the from-scratch path
        kv_width = num_kv_heads * self.d_head
        factory = dict(bias=bias, device=device, dtype=dtype)
        self.q_proj = Linear(d_model, d_model, **factory)  # (D, D)
        self.k_proj = Linear(self.d_context, kv_width, **factory)  # (Hkv * Dh, D_context)
        self.v_proj = Linear(self.d_context, kv_width, **factory)  # (Hkv * Dh, D_context)
        self.output_proj = Linear(d_model, d_model, **factory)  # (D, D)

    def _check(self, t: torch.Tensor, width: int, what: str) -> None:
        if t.ndim != 3 or t.shape[-1] != width:
            raise ValueError(f"{type(self).__name__} expects {what} of shape (B, T, {width}), got {tuple(t.shape)}")

    def project(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, H, Tq, Dh), k and v (B, Hkv, Tk, Dh)."""
        q = split_heads(self.q_proj(x), self.num_heads)  # (B, Tq, D) -> (B, H, Tq, Dh)
        k = split_heads(self.k_proj(context), self.num_kv_heads)  # (B, Tk, Dc) -> (B, Hkv, Tk, Dh)
        v = split_heads(self.v_proj(context), self.num_kv_heads)  # (B, Tk, Dc) -> (B, Hkv, Tk, Dh)
        return q, k, v

    def attend(self, q, k, v, mask=None, attn_bias=None) -> torch.Tensor:
        """Attention of H query heads over Hkv key/value heads, heads merged and projected back to D."""
        groups = self.num_heads // self.num_kv_heads
        if groups > 1:  # each kv head serves `groups` consecutive query heads
            k = k.repeat_interleave(groups, dim=1)  # (B, Hkv, Tk, Dh) -> (B, H, Tk, Dh)
            v = v.repeat_interleave(groups, dim=1)
        out = scaled_dot_product_attention(q, k, v, mask, attn_bias, fused=self.fused)  # (B, H, Tq, Dh)
        return self.output_proj(merge_heads(out))  # (B, H, Tq, Dh) -> (B, Tq, D) -> (B, Tq, D)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask=None, attn_bias=None) -> torch.Tensor:
        context = x if context is None else context
        self._check(x, self.d_model, "x")
        self._check(context, self.d_context, "context")
        return self.attend(*self.project(x, context), mask, attn_bias)


class MultiHeadSelfAttention(MultiHeadAttention):
    """Self-attention, causal by default, with optional RoPE applied to q and k of every head.

    `mask` (True = may attend) broadcasts to (B, H, T, T) and is combined with the causal mask,
    e.g. a padding mask of shape (B, 1, 1, T). `token_positions` (T,) or (B, T) defaults to
    0..T-1 and is only used by RoPE.

    With a `cache` (a `LayerKVCache` holding S earlier positions), x holds only the new positions
    S..S+T-1: their keys and values are appended to the cache and the queries attend over all
    S + T keys. The result equals the last T rows of the uncached forward over the whole sequence.

    Shapes: x (B, T, D) -> (B, T, D)
    """

    def __init__(self, d_model: int, num_heads: int, causal: bool = True, rope=None,
                 num_kv_heads: int | None = None, fused: bool = True, bias: bool = False, device=None, dtype=None):
        super().__init__(d_model, num_heads, num_kv_heads, fused=fused, bias=bias, device=device, dtype=dtype)
        if rope is not None and rope.d_k != self.d_head:
            raise ValueError(f"RoPE was built for d_k={rope.d_k}, but the head width is {self.d_head}")
        self.causal, self.rope = causal, rope

    def full_mask(self, mask, batch: int, t: int, device, t_k: int | None = None) -> torch.Tensor | None:
        """The user's mask combined with the causal one; broadcastable to (B, H, T, Tk), Tk = T uncached."""
        t_k = t if t_k is None else t_k
        if mask is not None:
            target = (batch, self.num_heads, t, t_k)
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must be boolean (True = may attend), got {mask.dtype}")
            _check_broadcast(mask, target, f"mask of shape {tuple(mask.shape)} does not broadcast to (B, H, T, T) = "
                             f"{target}; a padding mask of keys has shape (B, 1, 1, T)")
        if self.causal:
            causal = causal_mask(t, t_k, device=device)  # (T, Tk): the queries are the last T positions
            return causal if mask is None else mask & causal
        return mask

    def qkv(self, x: torch.Tensor, token_positions=None):
        """Projected (and rotated) q (B, H, T, Dh), k and v (B, Hkv, T, Dh)."""
        self._check(x, self.d_model, "x")
        q, k, v = self.project(x, x)
        if self.rope is not None:
            if token_positions is not None and token_positions.ndim == 2:
                token_positions = token_positions[:, None, :]  # (B, T) -> (B, 1, T): the same for every head
            q = self.rope(q, token_positions)
            k = self.rope(k, token_positions)
        return q, k, v

    def attention_weights(self, x: torch.Tensor, mask=None, token_positions=None, attn_bias=None) -> torch.Tensor:
        """What each head attends to, for plotting. Shapes: x (B, T, D) -> (B, H, T, T)"""
        q, k, _ = self.qkv(x, token_positions)
        k = k.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)  # (B, Hkv, T, Dh) -> (B, H, T, Dh)
        return attention_weights(q, k, self.full_mask(mask, *x.shape[:2], x.device), attn_bias)

    def forward(self, x: torch.Tensor, mask=None, token_positions=None, attn_bias=None, cache=None) -> torch.Tensor:
        if cache is None:
            q, k, v = self.qkv(x, token_positions)
            return self.attend(q, k, v, self.full_mask(mask, *x.shape[:2], x.device), attn_bias)
        start, t = cache.length, x.shape[1]
        if token_positions is None:
            token_positions = torch.arange(start, start + t, device=x.device)  # (T,): continue where the cache ends
        q, k, v = self.qkv(x, token_positions)  # q (B, H, T, Dh), k and v (B, Hkv, T, Dh)
        k, v = cache.append(k, v)  # (B, Hkv, T, Dh) -> (B, Hkv, S + T, Dh)
        return self.attend(q, k, v, self.full_mask(mask, x.shape[0], t, x.device, start + t), attn_bias)


class MultiHeadCrossAttention(MultiHeadAttention):
    """Queries from the decoder stream `x`, keys and values from the encoder's `memory`.

    `mask` (True = may attend) broadcasts to (B, H, Tq, Tk), e.g. the memory's padding (B, 1, 1, Tk).

    Shapes: x (B, Tq, D), memory (B, Tk, D_memory) -> (B, Tq, D)
    """

    def __init__(self, d_model: int, num_heads: int, d_memory: int | None = None, fused: bool = True,
                 bias: bool = False, device=None, dtype=None):
        super().__init__(d_model, num_heads, d_context=d_memory, fused=fused, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask=None) -> torch.Tensor:
        return super().forward(x, memory, mask)
