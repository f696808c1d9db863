"""Linear and Embedding: the two layers every transformer is mostly made of.

Both store their weights exactly as `torch.nn` does, so a `state_dict` moves between them:
`Linear.weight` is `(d_out, d_in)` and the layer computes `x @ weight.T`; `Embedding.weight`
is `(V, D)` and the layer looks up rows.

Deviations from `torch.nn`:
- `Linear` has no bias by default (modern LMs drop it), and is initialised with a truncated
  normal of variance 2 / (d_in + d_out) (Glorot-style) instead of Kaiming-uniform.
- `Embedding` is initialised with a truncated normal of std 1 and checks its input: token ids
  must be integers in [0, V), and breaking that is an error that names the id.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Linear", "Embedding"]


class Linear(nn.Module):
    """y = x W^T (+ b), with W of shape (d_out, d_in).

    Shapes: x (..., d_in) -> (..., d_out)
    """

    def __init__(self, d_in: int, d_out: int, bias: bool = False, device=None, dtype=None):
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.weight = nn.Parameter(torch.empty(d_out, d_in, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_out, device=device, dtype=dtype)) if bias else None
        std = math.sqrt(2.0 / (d_in + d_out))
        nn.init.trunc_normal_(self.weight, std=std, a=-3 * std, b=3 * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise ValueError(
                f"Linear expected the last dimension of x to be d_in={self.d_in}, got shape {tuple(x.shape)}"
            )
        return F.linear(x, self.weight, self.bias)  # x @ weight.T + bias in one call: (..., d_in) -> (..., d_out)

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, bias={self.bias is not None}"


def check_token_ids(token_ids: torch.Tensor, vocab_size: int, what: str = "token_ids") -> None:
    """Raise a clear error unless `token_ids` is an integer tensor with values in [0, vocab_size)."""
    if not isinstance(token_ids, torch.Tensor):
        raise TypeError(f"{what} should be a torch.Tensor of integer ids, got {type(token_ids).__name__}")
    if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex or token_ids.dtype == torch.bool:
        raise TypeError(
            f"{what} should be an integer tensor (torch.long), got dtype {token_ids.dtype}; "
            "token ids index rows of the embedding table, so they cannot be fractional"
        )
    if token_ids.numel() == 0 or token_ids.device.type == "meta":  # meta tensors have shapes, no values
        return
    lo, hi = int(token_ids.min()), int(token_ids.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise IndexError(f"{what} contains id {bad}, outside the vocabulary [0, {vocab_size})")


class Embedding(nn.Module):
    """A lookup table: token id i -> row i of `weight`. Equal to one_hot(ids, V) @ weight.

    Shapes: token_ids (...) integer -> (..., D)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        nn.init.trunc_normal_(self.weight, std=1.0, a=-3.0, b=3.0)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        check_token_ids(token_ids, self.num_embeddings)
        return F.embedding(token_ids, self.weight)  # (...) -> (..., D): weight[token_ids], reproducible backward

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"
