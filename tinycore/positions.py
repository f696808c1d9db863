"""Positional information: attention alone is permutation-equivariant, so order must be added.

- Absolute, added to the token embeddings: the sinusoidal table of Vaswani et al. (2017),
  PE[t, 2i] = sin(t / base^(2i/D)), PE[t, 2i+1] = cos(t / base^(2i/D)); or a learned table (GPT).
- Relative, added to the attention scores: a learned bias per head and clipped offset j - i
  (after Shaw et al., 2018, and T5 without its log buckets); ALiBi's fixed linear penalty
  -m_h * |i - j| with head slopes m_h = 2^(-8h/H) for heads h = 1..H (Press et al., 2022).
- Rotary (RoPE, Su et al., 2021): rotate each pair (x[2i], x[2i+1]) of a query or key by the
  angle t * theta^(-2i/d_k), so that q_m . k_n depends on the positions only through m - n.

Deviations: RoPE uses the RoFormer paper's *interleaved* pairs; LLaMA's Hugging Face port rotates
the half-split pairs (x[i], x[i + d_k/2]) instead. The two agree up to a fixed permutation of the
q/k features (`half_split_permutation`), which is how weights move between them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "sinusoidal_positions", "LearnedPositionalEmbedding", "RelativePositionBias",
    "alibi_slopes", "alibi_bias", "RotaryEmbedding", "half_split_permutation",
]


def _check_positions(positions: torch.Tensor, limit: int, who: str) -> None:
    if positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise TypeError(f"{who}: token_positions must be integers, got {positions.dtype}")
    if positions.numel() == 0 or positions.device.type == "meta":  # meta tensors have shapes, no values
        return
    if int(positions.min()) < 0 or int(positions.max()) >= limit:
        bad = int(positions.max()) if int(positions.max()) >= limit else int(positions.min())
        raise ValueError(f"{who}: position {bad} is outside [0, max_seq_len={limit})")


def sinusoidal_positions(num_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed table of Vaswani et al. Shapes: -> (num_positions, D)"""
    if d_model % 2:
        raise ValueError(f"sinusoidal positions pair sin and cos, so d_model must be even, got {d_model}")
    positions = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (D/2,): base^(-2i/D)
    angles = positions * inv_freq  # (T, 1) * (D/2,) -> (T, D/2)
    table = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (T, D/2, 2): sin to even, cos to odd features
    return table.flatten(-2)  # (T, D/2, 2) -> (T, D)


class LearnedPositionalEmbedding(nn.Module):
    """A learned vector per position, as in GPT; it cannot represent positions past max_seq_len.

    Shapes: token_positions (..., T) integer -> (..., T, D)
    """

    def __init__(self, max_seq_len: int, d_model: int, device=None, dtype=None):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.weight = nn.Parameter(torch.empty(max_seq_len, d_model, device=device, dtype=dtype))  # (L, D)
        nn.init.normal_(self.weight, std=0.02)  # GPT-2's initialisation

    def forward(self, token_positions: torch.Tensor) -> torch.Tensor:
        _check_positions(token_positions, self.max_seq_len, "LearnedPositionalEmbedding")
        return F.embedding(token_positions, self.weight)  # (..., T) -> (..., T, D): row t of the table


def _offsets(t_q: int, t_k: int, device=None) -> torch.Tensor:
    """(Tq, Tk) key position minus query position; queries are the last Tq of Tk positions."""
    q_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]  # (Tq, 1)
    k_pos = torch.arange(t_k, device=device)[None, :]  # (1, Tk)
    return k_pos - q_pos  # (Tq, Tk)


class RelativePositionBias(nn.Module):
    """A learned scalar per head and relative offset j - i, clipped to [-max_distance, max_distance].

    Shapes: -> bias (H, Tq, Tk), to add to the attention scores
    """

    def __init__(self, num_heads: int, max_distance: int, device=None, dtype=None):
        super().__init__()
        self.num_heads, self.max_distance = num_heads, max_distance
        self.weight = nn.Parameter(torch.zeros(num_heads, 2 * max_distance + 1, device=device, dtype=dtype))

    def forward(self, t_q: int, t_k: int | None = None) -> torch.Tensor:
        t_k = t_q if t_k is None else t_k
        offsets = _offsets(t_q, t_k, self.weight.device).clamp(-self.max_distance, self.max_distance)  # (Tq, Tk)
        table = self.weight.T  # (H, 2M+1) -> (2M+1, H): one row per offset
        return F.embedding(offsets + self.max_distance, table).permute(2, 0, 1)  # (Tq, Tk, H) -> (H, Tq, Tk)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... for n = num_heads a power
    of two; otherwise those of the next lower power of two, then every other slope of the next higher.

    Shapes: -> (H,)
    """

    def powers(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    if num_heads & (num_heads - 1) == 0:
        return torch.tensor(powers(num_heads))
    lower = 2 ** math.floor(math.log2(num_heads))
    return torch.tensor(powers(lower) + powers(2 * lower)[0::2][: num_heads - lower])


def alibi_bias(num_heads: int, t_q: int, t_k: int | None = None, device=None, dtype=None) -> torch.Tensor:
    """-m_h * |i - j|: a penalty growing linearly with distance, steeper for some heads than others.

    Shapes: -> (H, Tq, Tk)
    """
    t_k = t_q if t_k is None else t_k
    distance = _offsets(t_q, t_k, device).abs()  # (Tq, Tk)
    slopes = alibi_slopes(num_heads).to(device=device, dtype=dtype or torch.get_default_dtype())  # (H,)
    return -slopes[:, None, None] * distance  # (H, 1, 1) * (Tq, Tk) -> (H, Tq, Tk)


class RotaryEmbedding(nn.Module):
    """Rotate pairs (x[2i], x[2i+1]) by angle position * theta^(-2i/d_k) (RoFormer's layout).

    Shapes: x (..., T, d_k), token_positions (..., T) or None (= 0..T-1) -> (..., T, d_k)
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RoPE rotates pairs of features, so d_k must be even, got {d_k}")
        self.theta, self.d_k, self.max_seq_len = theta, d_k, max_seq_len
        inv_freq = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float32, device=device) / d_k)  # (d_k/2,)
        angles = torch.arange(max_seq_len, dtype=torch.float32, device=device)[:, None] * inv_freq  # (L, d_k/2)
        self.register_buffer("cos", angles.cos(), persistent=False)  # derived from theta: not in the state_dict
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, token_positions: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-1] != self.d_k:
            raise ValueError(f"RotaryEmbedding was built for d_k={self.d_k}, got x of shape {tuple(x.shape)}")
        if token_positions is None:  # positions 0..T-1: the first T rows of the tables
            if x.shape[-2] > self.max_seq_len:
                raise ValueError(f"RotaryEmbedding: sequence of length {x.shape[-2]} exceeds max_seq_len={self.max_seq_len}")
            cos, sin = self.cos[: x.shape[-2]], self.sin[: x.shape[-2]]  # (T, d_k/2)
        else:
            _check_positions(token_positions, self.max_seq_len, "RotaryEmbedding")
            cos, sin = self.cos[token_positions], self.sin[token_positions]  # (..., T) -> (..., T, d_k/2)
        compute = torch.promote_types(x.dtype, torch.float32)  # half precision rotates in float32
        cos, sin = cos.to(compute), sin.to(compute)
        x_even, x_odd = x[..., 0::2].to(compute), x[..., 1::2].to(compute)  # (..., T, d_k/2) each
        rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)  # (..., T, d_k/2, 2)
        return rotated.flatten(-2).to(x.dtype)  # (..., T, d_k/2, 2) -> (..., T, d_k), pairs interleaved again

    def extra_repr(self) -> str:
        return f"theta={self.theta}, d_k={self.d_k}, max_seq_len={self.max_seq_len}"


def half_split_permutation(d_k: int) -> torch.Tensor:
    """perm such that rotating x[..., perm] with half-split RoPE equals (interleaved RoPE of x)[..., perm]:
    the even features first, then the odd ones. Apply it to each head's rows of q_proj and k_proj.

    Shapes: -> (d_k,) long
    """
    return torch.cat((torch.arange(0, d_k, 2), torch.arange(1, d_k, 2)))
