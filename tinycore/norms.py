"""LayerNorm and RMSNorm, over the last (feature) dimension.

LayerNorm (Ba, Kiros & Hinton, 2016):

    y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias

with the *biased* variance (divide by D, not D - 1) and eps *inside* the square root, exactly as
`torch.nn.LayerNorm` does. RMSNorm (Zhang & Sennrich, 2019) drops the re-centring:

    y = x / sqrt(mean(x^2) + eps) * weight (+ bias)

Partial RMSNorm (same paper) estimates the RMS from the first k = floor(p * D) features only,
but still rescales all D of them.

Deviations from the textbook form, all deliberate:
- Both compute in at least float32 and return the input's dtype (half-precision x^2 overflows
  at |x| > 256). LLaMA's reference code does the same for RMSNorm but casts back *before*
  multiplying by the weight; here the weight is applied in float32 too, so half-precision outputs
  can differ from LLaMA's in the last bit.
- RMSNorm puts eps inside the square root, as `torch.nn.RMSNorm`, T5 and LLaMA do; the RMSNorm
  paper's own code adds eps to the RMS instead (`x / (rms + eps)`, eps = 1e-8). The two differ
  only when mean(x^2) is comparable to eps; chapter 3 shows where.
- The optional RMSNorm bias is the paper's `offset`, named `bias` here.
- The modules run PyTorch's own kernels (`F.layer_norm`, `F.rms_norm`) on float32 and float64
  input, where those are the same function as `layer_norm` and `rms_norm` below (tested) and
  train a model faster; half-precision input, partial RMSNorm and the RMSNorm bias use the
  functions here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["layer_norm", "rms_norm", "partial_size", "LayerNorm", "RMSNorm"]


_KERNEL_DTYPES = (torch.float32, torch.float64)  # where PyTorch's norm kernels compute as the functions here do


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)  # float16/bfloat16 -> float32; float64 stays


def _check_features(x: torch.Tensor, d_model: int, who: str) -> None:
    if x.ndim == 0 or x.shape[-1] != d_model:
        raise ValueError(
            f"{who} normalises over the last dimension, which should be d_model={d_model}, "
            f"but x has shape {tuple(x.shape)}"
        )


def _check_affine(x: torch.Tensor, weight, bias, who: str) -> None:
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (x.shape[-1],):
            raise ValueError(
                f"{who}: {name} should have shape (D,) = ({x.shape[-1]},) to match x {tuple(x.shape)}, "
                f"got {tuple(t.shape)}"
            )


def partial_size(d_model: int, p: float | None) -> int:
    """How many leading features partial RMSNorm uses: floor(p * d_model), or all of them if p is None."""
    if p is None:
        return d_model
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"partial RMSNorm needs 0 < p <= 1, got p={p!r}")
    k = math.floor(p * d_model)
    if k < 1:
        raise ValueError(f"p={p} keeps floor(p * d_model) = floor({p} * {d_model}) = 0 features; use a larger p")
    return k


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5) -> torch.Tensor:
    """Functional LayerNorm over the last dimension.

    Shapes: x (..., D), weight (D,), bias (D,) -> (..., D)
    """
    _check_affine(x, weight, bias, "layer_norm")
    h = x.to(_compute_dtype(x))
    centred = h - h.mean(dim=-1, keepdim=True)  # (..., D) - (..., 1) -> (..., D)
    var = centred.pow(2).mean(dim=-1, keepdim=True)  # (..., D) -> (..., 1); biased: divide by D, not D - 1
    out = centred * torch.rsqrt(var + eps)  # eps inside the root keeps 1/sqrt finite
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out.to(x.dtype)


def rms_norm(x, weight=None, eps: float = 1e-5, p: float | None = None, bias=None) -> torch.Tensor:
    """Functional (partial) RMSNorm over the last dimension.

    Shapes: x (..., D), weight (D,), bias (D,) -> (..., D)
    """
    _check_affine(x, weight, bias, "rms_norm")
    k = partial_size(x.shape[-1], p)
    h = x.to(_compute_dtype(x))
    mean_square = h[..., :k].pow(2).mean(dim=-1, keepdim=True)  # (..., D) -> (..., 1)
    out = h * torch.rsqrt(mean_square + eps)  # rescale all D features by the (partial) RMS
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out.to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with a learnable gain `weight` (ones) and `bias` (zeros); same state_dict as nn.LayerNorm.

    Shapes: x (..., D) -> (..., D)
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_model, device=device, dtype=dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.d_model, "LayerNorm")
        if x.dtype in _KERNEL_DTYPES:  # PyTorch's kernel: the same function as layer_norm, faster
            return F.layer_norm(x, (self.d_model,), self.weight, self.bias, self.eps)
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    """RMSNorm with gain `weight` (ones); optional `bias` and partial fraction `p`.

    With p=None and bias=False it has the same state_dict and output as nn.RMSNorm(d_model, eps).

    Shapes: x (..., D) -> (..., D)
    """

    def __init__(
        self,
        d_model: int,
        eps: float = 1e-5,
        p: float | None = None,  # partial RMSNorm: estimate the RMS from the first floor(p * D) features
        bias: bool = False,  # the paper's optional offset; LLaMA and T5 go without
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.d_model, self.eps, self.p = d_model, eps, p
        self.k = partial_size(d_model, p)  # validates p now, not at the first forward
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_model, device=device, dtype=dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.d_model, "RMSNorm")
        if x.dtype in _KERNEL_DTYPES and self.p is None and self.bias is None:  # what nn.RMSNorm runs
            return F.rms_norm(x, (self.d_model,), self.weight, self.eps)
        return rms_norm(x, self.weight, self.eps, self.p, self.bias)

    def extra_repr(self) -> str:
        extra = f", p={self.p} (k={self.k})" if self.p is not None else ""
        return f"d_model={self.d_model}, eps={self.eps}{extra}, bias={self.bias is not None}"
