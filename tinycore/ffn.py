"""The position-wise feed-forward network: the same two-layer MLP applied to every token.

FeedForward (Vaswani et al., 2017, with GELU as in GPT and BERT):

    FFN(x) = w2(gelu(w1 x)),   w1: (F, D), w2: (D, F), usually F = 4D

SwiGLU (Shazeer, 2020), as in LLaMA:

    SwiGLU(x) = w2(silu(w1 x) * w3 x),   w1 (gate), w3 (up): (F, D), w2 (down): (D, F)

SwiGLU has three matrices instead of two, so at the same parameter count its hidden width is
2/3 of the GELU network's: F = 8D/3 instead of 4D (`swiglu_hidden_size`).

Deviations from the papers: no biases unless asked for (`bias=True`, as in GPT-2; LLaMA and PaLM
go without); the original transformer used ReLU.

The modules call PyTorch's activation kernels, `F.gelu` (exact, erf form) and `F.silu`: the same
functions as `tinycore.gelu` and `tinycore.silu` (tested), computed in one pass over memory
instead of several.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Linear

__all__ = ["FeedForward", "SwiGLU", "swiglu_hidden_size"]


def swiglu_hidden_size(d_model: int, multiple_of: int = 1) -> int:
    """The SwiGLU width with about the parameters of a 4*D GELU FFN: int(8D/3), truncated as in
    LLaMA's code, then rounded up to a multiple of `multiple_of`."""
    hidden = int(8 * d_model / 3)
    return multiple_of * -(-hidden // multiple_of)


class FeedForward(nn.Module):
    """w2(gelu(w1 x)), applied independently at every position.

    Shapes: x (..., D) -> (..., D)
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, bias=bias, device=device, dtype=dtype)  # (F, D): up
        self.w2 = Linear(d_ff, d_model, bias=bias, device=device, dtype=dtype)  # (D, F): down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x)))  # (..., D) -> (..., F) -> (..., D); F.gelu is tinycore.gelu


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x): a gated FFN; w1 is the gate, w3 the up projection, w2 the down.

    Shapes: x (..., D) -> (..., D)
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, bias=bias, device=device, dtype=dtype)  # (F, D): gate, goes through SiLU
        self.w2 = Linear(d_ff, d_model, bias=bias, device=device, dtype=dtype)  # (D, F): down
        self.w3 = Linear(d_model, d_ff, bias=bias, device=device, dtype=dtype)  # (F, D): up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (..., D) -> 2 x (..., F) -> (..., D); F.silu is tinycore.silu
