"""A decoder-only language model: embeddings, a stack of causal TransformerBlocks, a final norm
and a linear head that scores every vocabulary entry at every position.

The defaults are LLaMA's choices (Touvron et al., 2023): RMSNorm, SwiGLU, rotary positions, no
biases, separate embedding and output matrices. `gpt_config` gives GPT-2's (Radford et al.,
2019): LayerNorm, a GELU FFN, learned positions, biases, and the output head tied to the token
embeddings. Every choice can be switched on its own, which is how chapter 12 measures each one.

Initialisation follows GPT-2: weights ~ N(0, 0.02), and the two projections that write into the
residual stream (attention's output_proj and the FFN's w2) are scaled by 1/sqrt(2 * num_layers)
so the stream's variance does not grow with depth.

Deviations: no dropout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import TransformerBlock, make_norm
from .kv_cache import KVCache
from .layers import Embedding, Linear, check_token_ids
from .positions import LearnedPositionalEmbedding, RotaryEmbedding

__all__ = ["LMConfig", "TransformerLM", "gpt_config", "lm_loss", "next_token_loss", "split_loss"]

POSITIONS = ("rope", "learned")


@dataclass
class LMConfig:
    vocab_size: int
    context_length: int  # the longest sequence the model accepts
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int  # the FFN's hidden width F
    rope_theta: float = 10000.0
    num_kv_heads: int | None = None  # < num_heads: grouped-query attention (None: = num_heads)
    norm: str = "rmsnorm"  # or "layernorm"
    ffn: str = "swiglu"  # or "gelu"
    positions: str = "rope"  # or "learned": a table added to the token embeddings
    tie_embeddings: bool = False  # lm_head.weight is token_embeddings.weight
    bias: bool = False  # biases in the attention and FFN Linears (GPT-2)
    norm_position: str = "pre"  # or "post"


def gpt_config(vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
               d_ff: int | None = None, **overrides) -> LMConfig:
    """GPT-2's architecture: LayerNorm, GELU FFN of width 4D, learned positions, biases, tied head."""
    choices = dict(norm="layernorm", ffn="gelu", positions="learned", tie_embeddings=True, bias=True)
    choices.update(overrides)
    return LMConfig(vocab_size, context_length, d_model, num_layers, num_heads, d_ff or 4 * d_model, **choices)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting targets[b, t] from logits[b, t]: nats per token.

    Shapes: logits (B, T, V), targets (B, T) -> ()
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"lm_loss: logits {tuple(logits.shape)} should be targets' shape {tuple(targets.shape)} + (V,)")
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())  # (B*T, V) and (B*T,) -> ()


def next_token_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The `loss_fn` for tinycore.train: batch = (x, y) with y the next tokens of x."""
    x, y = batch
    return lm_loss(model(x), y)


@torch.no_grad()
def split_loss(model: "TransformerLM", data: torch.Tensor, batch_size: int = 64) -> float:
    """The mean next-token loss over a whole token sequence (e.g. the validation split), cut into
    non-overlapping windows of the model's context length: every token is predicted exactly once.

    Shapes: data (N,) -> a float (nats per token)
    """
    T = model.config.context_length
    n = (len(data) - 1) // T  # whole windows; their targets stay inside data
    if n == 0:
        raise ValueError(f"split_loss needs more than context_length={T} tokens, got {len(data)}")
    device = next(model.parameters()).device
    x = data[: n * T].view(n, T)  # (N,) -> (n, T)
    y = data[1 : n * T + 1].view(n, T)  # the same windows shifted by one
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, n, batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        total += float(lm_loss(model(xb), yb)) * len(xb)
    model.train(was_training)
    return total / n


class TransformerLM(nn.Module):
    """`token_embeddings, layers.{i}, ln_final, lm_head`: token ids in, next-token logits out.

    Shapes: token_ids (B, T) -> logits (B, T, V), T <= context_length
    """

    def __init__(self, vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
                 d_ff: int, rope_theta: float = 10000.0, *, num_kv_heads: int | None = None, norm: str = "rmsnorm",
                 ffn: str = "swiglu", positions: str = "rope", tie_embeddings: bool = False, bias: bool = False,
                 norm_position: str = "pre", fused: bool = True, device=None, dtype=None):
        super().__init__()
        self.config = LMConfig(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta,
                               num_kv_heads, norm, ffn, positions, tie_embeddings, bias, norm_position)
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        factory = dict(device=device, dtype=dtype)
        self.token_embeddings = Embedding(vocab_size, d_model, **factory)  # (V, D)
        rope = None
        if positions == "learned":
            self.position_embeddings = LearnedPositionalEmbedding(context_length, d_model, **factory)  # (L, D)
        else:  # one table of angles, shared by every layer
            rope = RotaryEmbedding(rope_theta, d_model // num_heads, context_length, device=device)
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ff, causal=True, rope=rope, norm=norm, ffn=ffn,
                             norm_position=norm_position, num_kv_heads=num_kv_heads, bias=bias, fused=fused, **factory)
            for _ in range(num_layers)
        )
        self.ln_final = make_norm(norm, d_model, **factory)
        self.lm_head = Linear(d_model, vocab_size, **factory)  # (V, D)
        if self.lm_head.weight.device.type != "meta":  # a meta model (for sizing) has no values to initialise
            self._init_weights()
        if tie_embeddings:
            self.lm_head.weight = self.token_embeddings.weight  # one (V, D) matrix reads and writes tokens

    @classmethod
    def from_config(cls, config: LMConfig, **kwargs) -> "TransformerLM":
        return cls(**asdict(config), **kwargs)

    def _init_weights(self) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif name.endswith(("attn.output_proj.weight", "ffn.w2.weight")):
                nn.init.normal_(p, std=residual_std)  # these write into the residual stream
            elif p.ndim == 2:
                nn.init.normal_(p, std=0.02)  # embeddings and projections; norms keep their ones

    def make_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for `batch_size` sequences of up to `max_len` (default context_length) tokens."""
        c, p = self.config, self.lm_head.weight
        return KVCache(c.num_layers, batch_size, c.num_kv_heads or c.num_heads, max_len or c.context_length,
                       c.d_model // c.num_heads, device=p.device, dtype=p.dtype)

    def forward(self, token_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if token_ids.ndim != 2:
            raise ValueError(f"TransformerLM expects token_ids of shape (B, T), got {tuple(token_ids.shape)}")
        check_token_ids(token_ids, self.config.vocab_size)
        start = 0 if cache is None else cache.length  # positions already in the cache
        T = token_ids.shape[1]
        if start + T > self.config.context_length:
            what = f"{T} tokens" if cache is None else f"{T} new tokens after {start} cached ones"
            raise ValueError(f"TransformerLM: {what} exceed context_length={self.config.context_length}; "
                             "crop the input to its last context_length tokens")
        positions = torch.arange(start, start + T, device=token_ids.device)  # (T,)
        x = self.token_embeddings(token_ids)  # (B, T) -> (B, T, D)
        if self.config.positions == "learned":
            x = x + self.position_embeddings(positions)  # (B, T, D) + (T, D)
        for i, layer in enumerate(self.layers):
            x = layer(x, token_positions=positions, cache=None if cache is None else cache[i])  # (B, T, D)
        return self.lm_head(self.ln_final(x))  # (B, T, D) -> (B, T, V)
