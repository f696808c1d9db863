"""The transformer block: attention and a feed-forward network, each wrapped in a residual
connection with a normalisation.

Pre-norm (GPT-2, LLaMA; Xiong et al., 2020), the default here:

    x = x + Attention(Norm1(x))
    x = x + FFN(Norm2(x))

Post-norm (the original transformer, Vaswani et al., 2017, and BERT):

    x = Norm1(x + Attention(x))
    x = Norm2(x + FFN(x))

Pre-norm leaves an identity path from the input to the output of the whole stack (the residual
stream), which is why it trains without a learning-rate warm-up; post-norm normalises the stream
after every sub-layer and needs warm-up at high learning rates.

Deviations: no dropout; no biases unless asked for (`bias=True`, as in GPT-2).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import MultiHeadSelfAttention
from .ffn import FeedForward, SwiGLU
from .norms import LayerNorm, RMSNorm

__all__ = ["TransformerBlock", "make_norm", "make_ffn"]

NORMS = ("rmsnorm", "layernorm")
FFNS = ("swiglu", "gelu")
NORM_POSITIONS = ("pre", "post")


def _choose(value: str, allowed: tuple, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return value


def make_norm(norm: str, d_model: int, bias: bool = True, device=None, dtype=None) -> nn.Module:
    """RMSNorm(D) or LayerNorm(D) (with a bias unless `bias=False`), by name."""
    if _choose(norm, NORMS, "norm") == "rmsnorm":
        return RMSNorm(d_model, device=device, dtype=dtype)
    return LayerNorm(d_model, bias=bias, device=device, dtype=dtype)


def make_ffn(ffn: str, d_model: int, d_ff: int, bias: bool = False, device=None, dtype=None) -> nn.Module:
    """SwiGLU(D, F) or the GELU FeedForward(D, F), by name."""
    cls = SwiGLU if _choose(ffn, FFNS, "ffn") == "swiglu" else FeedForward
    return cls(d_model, d_ff, bias=bias, device=device, dtype=dtype)


class TransformerBlock(nn.Module):
    """Self-attention and a feed-forward network with residual connections: `ln1, attn, ln2, ffn`.

    `mask`, `token_positions` and `cache` are passed to the attention (see MultiHeadSelfAttention).

    Shapes: x (B, T, D) -> (B, T, D)
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        causal: bool = True,  # False: every token sees every other (an encoder)
        rope=None,  # a RotaryEmbedding shared by all blocks, or None
        norm: str = "rmsnorm",  # or "layernorm"
        ffn: str = "swiglu",  # or "gelu"
        norm_position: str = "pre",  # or "post": normalise after the residual addition
        num_kv_heads: int | None = None,  # < num_heads: grouped-query attention
        bias: bool = False,  # biases in every Linear (GPT-2); LayerNorm keeps its own
        fused: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.norm_position = _choose(norm_position, NORM_POSITIONS, "norm_position")
        factory = dict(device=device, dtype=dtype)
        self.ln1 = make_norm(norm, d_model, **factory)
        self.attn = MultiHeadSelfAttention(d_model, num_heads, causal=causal, rope=rope, num_kv_heads=num_kv_heads,
                                           fused=fused, bias=bias, **factory)
        self.ln2 = make_norm(norm, d_model, **factory)
        self.ffn = make_ffn(ffn, d_model, d_ff, bias=bias, **factory)

    def forward(self, x: torch.Tensor, mask=None, token_positions=None, cache=None) -> torch.Tensor:
        if self.norm_position == "pre":
            x = x + self.attn(self.ln1(x), mask=mask, token_positions=token_positions, cache=cache)  # (B, T, D)
            return x + self.ffn(self.ln2(x))  # (B, T, D)
        x = self.ln1(x + self.attn(x, mask=mask, token_positions=token_positions, cache=cache))  # (B, T, D)
        return self.ln2(x + self.ffn(x))  # (B, T, D)
