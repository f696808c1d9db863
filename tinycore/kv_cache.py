"""A key/value cache for autoregressive generation.

A causal decoder's keys and values for positions 0..t-1 do not change when token t arrives, so
generation can keep them and compute q, k, v for the new token only: each step then costs O(T)
attention work instead of re-running the whole prefix (O(T^2)). The cache is preallocated to
`max_len` positions per layer, stored as (B, Hkv, max_len, Dh): with grouped-query attention it
holds Hkv heads, not H, which is where GQA's memory saving comes from.
"""

from __future__ import annotations

import torch

__all__ = ["KVCache", "LayerKVCache"]


class LayerKVCache:
    """The keys and values of one attention layer; `length` positions are filled."""

    def __init__(self, batch_size: int, num_kv_heads: int, max_len: int, d_head: int, device=None, dtype=None):
        shape = (batch_size, num_kv_heads, max_len, d_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (B, Hkv, L, Dh)
        self.v = torch.zeros(shape, device=device, dtype=dtype)  # (B, Hkv, L, Dh)
        self.max_len = max_len
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' k, v (B, Hkv, t, Dh); return all so far (B, Hkv, length + t, Dh)."""
        if k.shape[:2] != self.k.shape[:2] or k.shape[-1] != self.k.shape[-1] or k.shape != v.shape:
            raise ValueError(f"KV cache holds (B, Hkv, L, Dh) = {tuple(self.k.shape)}; got k {tuple(k.shape)}, "
                             f"v {tuple(v.shape)}")
        start, end = self.length, self.length + k.shape[-2]
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {self.length} positions stored, {k.shape[-2]} more would exceed "
                             f"max_len={self.max_len}")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]  # (B, Hkv, end, Dh) each: views, no copy


class KVCache:
    """One LayerKVCache per layer of a decoder; `length` is the number of positions seen."""

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_len: int, d_head: int,
                 device=None, dtype=None):
        self.layers = [LayerKVCache(batch_size, num_kv_heads, max_len, d_head, device, dtype)
                       for _ in range(num_layers)]
        self.max_len = max_len

    @property
    def length(self) -> int:
        return self.layers[0].length

    def __getitem__(self, i: int) -> LayerKVCache:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def num_bytes(self) -> int:
        """Memory the cache holds (all layers, keys and values)."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in (layer.k, layer.v))
