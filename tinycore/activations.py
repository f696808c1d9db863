"""The nonlinearities the course builds from scratch: softmax, GELU and SiLU.

softmax(x)_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)): subtracting the maximum changes
nothing mathematically and keeps exp() from overflowing (float32 overflows past exp(88)).

GELU (Hendrycks & Gimpel, 2016) is the exact form x * Phi(x) with Phi the standard normal CDF,
as `torch.nn.GELU()` computes by default (not the tanh approximation GPT-2 used).
SiLU (a.k.a. Swish, Ramachandran et al., 2017) is x * sigmoid(x).
"""

from __future__ import annotations

import math

import torch

__all__ = ["softmax", "gelu", "silu"]


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along `dim`. Shapes: x (...) -> (...)"""
    shifted = x - x.amax(dim=dim, keepdim=True)  # the largest entry becomes 0: exp() cannot overflow
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU: x * Phi(x) = x/2 * (1 + erf(x / sqrt(2))). Shapes: x (...) -> (...)"""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU / Swish: x * sigmoid(x). Shapes: x (...) -> (...)"""
    return x * torch.sigmoid(x)
