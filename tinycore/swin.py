"""The Swin Transformer (Liu et al., 2021, "Hierarchical Vision Transformer using Shifted Windows").

Attention runs inside M x M windows of the feature map, so its cost grows linearly with the number
of tokens instead of quadratically. Blocks come in pairs: W-MSA in regular windows, then SW-MSA in
windows shifted by M // 2 (a cyclic roll plus a mask; see tinycore.windows), so that information
crosses window borders. Each block is pre-norm, as in ViT:

    x = x + (S)W-MSA(LN(x)),   x = x + MLP(LN(x))

and every attention score gets a learned relative position bias B[dy, dx] per head, read from a
table of (2M - 1)^2 rows:  Attention(Q, K, V) = softmax(Q K^T / sqrt(Dh) + B) V.

Between stages, patch merging concatenates each 2 x 2 group of neighbours (4D features), normalises
and projects them to 2D: half the resolution, twice the width, a pyramid like a CNN's.

Tensors stay channels-last, (B, H, W, D): the official code's (B, H W, D) seen as a grid.

Deviations from the official code: no dropout or stochastic depth; no absolute position embedding
(the official default, ape=False, too); sides that are not multiples of the window raise an error
instead of being padded; the boolean mask of tinycore.windows instead of an additive -100 mask.
Kept from it: biases in the q/k/v and output projections, the table layout ((2M - 1)^2, H), the
order of the four neighbours in patch merging, and its rule that a stage whose map is no larger
than the window uses one window covering the whole map and never shifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention
from .ffn import FeedForward
from .layers import Linear
from .norms import LayerNorm
from .vit import PatchEmbedding
from .windows import check_windows, cyclic_shift, relative_position_index, shifted_window_mask, window_partition, \
    window_reverse

__all__ = ["WindowAttention", "SwinBlock", "PatchMerging", "SwinConfig", "Swin", "swin_t_config"]


def _check_map(x: torch.Tensor, d_model: int, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[-1] != d_model:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} expects a channels-last map (B, H, W, D={d_model}), got {shape}")


class WindowAttention(MultiHeadAttention):
    """Multi-head self-attention inside each window, with a learned relative position bias.

    `relative_position_bias_table` ((2M - 1)^2, H) holds one scalar per head and offset (dy, dx);
    `mask` (nW, N, N), True = may attend, applies to window w of every image (windows ordered as
    window_partition makes them, image by image).

    Shapes: x (B * nW, N, D) with N = M * M tokens per window -> (B * nW, N, D)
    """

    def __init__(self, d_model: int, num_heads: int, window_size: int, bias: bool = True, fused: bool = True,
                 device=None, dtype=None):
        super().__init__(d_model, num_heads, fused=fused, bias=bias, device=device, dtype=dtype)
        self.window_size = window_size
        table = torch.empty((2 * window_size - 1) ** 2, num_heads, device=device, dtype=dtype)
        self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))  # ((2M-1)^2, H)
        index = relative_position_index(window_size, device=device)  # (N, N), derived from M: not saved
        self.register_buffer("relative_position_index", index, persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """bias[h, i, j] = table[index[i, j], h]. Shapes: -> (H, N, N)"""
        N = self.window_size ** 2
        bias = F.embedding(self.relative_position_index.flatten(), self.relative_position_bias_table)  # (N * N, H)
        return bias.view(N, N, self.num_heads).permute(2, 0, 1)  # (N, N, H) -> (H, N, N)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        N = self.window_size ** 2
        if x.ndim != 3 or x.shape[1:] != (N, self.d_model):
            raise ValueError(f"WindowAttention expects windows of shape (B * nW, N={N}, D={self.d_model}), "
                             f"got {tuple(x.shape)}")
        windows = x.shape[0]
        q, k, v = self.project(x, x)  # (B * nW, H, N, Dh) each
        if mask is not None:
            if mask.dtype != torch.bool or mask.ndim != 3 or mask.shape[1:] != (N, N) or windows % mask.shape[0]:
                raise ValueError(f"WindowAttention: mask should be bool (nW, {N}, {N}) with nW dividing the "
                                 f"{windows} windows, got {mask.dtype} {tuple(mask.shape)}")
            nW = mask.shape[0]
            q, k, v = (t.view(windows // nW, nW, *t.shape[1:]) for t in (q, k, v))  # (B * nW, ...) -> (B, nW, H, N, Dh)
            mask = mask[:, None]  # (nW, N, N) -> (nW, 1, N, N): the same for every head and every image
        out = scaled_dot_product_attention(q, k, v, mask, self.relative_position_bias(), fused=self.fused)
        out = out.reshape(windows, self.num_heads, N, self.d_head)  # (..., H, N, Dh) -> (B * nW, H, N, Dh)
        return self.output_proj(merge_heads(out))  # (B * nW, H, N, Dh) -> (B * nW, N, D)


class SwinBlock(nn.Module):
    """A pre-norm block whose attention is W-MSA (shift = 0) or SW-MSA (0 < shift < M): `ln1, attn, ln2, ffn`.

    Shapes: x (B, H, W, D) with H and W multiples of M -> (B, H, W, D)
    """

    def __init__(self, d_model: int, num_heads: int, window_size: int, shift: int = 0, mlp_ratio: int = 4,
                 fused: bool = True, device=None, dtype=None):
        super().__init__()
        check_windows(window_size, window_size, window_size, shift, who="SwinBlock")
        self.d_model, self.window_size, self.shift = d_model, window_size, shift
        factory = dict(device=device, dtype=dtype)
        self.ln1 = LayerNorm(d_model, **factory)
        self.attn = WindowAttention(d_model, num_heads, window_size, fused=fused, **factory)
        self.ln2 = LayerNorm(d_model, **factory)
        self.ffn = FeedForward(d_model, mlp_ratio * d_model, bias=True, **factory)  # the paper's GELU MLP

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.d_model, "SwinBlock")
        B, H, W, D = x.shape
        M, s = self.window_size, self.shift
        check_windows(H, W, M, s, who="SwinBlock")
        h = cyclic_shift(self.ln1(x), s)  # (B, H, W, D), rolled up and left by s (not at all for W-MSA)
        windows = window_partition(h, M).view(-1, M * M, D)  # (B, H, W, D) -> (B * nW, M, M, D) -> (B * nW, N, D)
        mask = shifted_window_mask(H, W, M, s, device=x.device) if s else None  # (nW, N, N): region vs region
        windows = self.attn(windows, mask)  # (B * nW, N, D)
        h = window_reverse(windows.view(-1, M, M, D), M, H, W)  # (B * nW, N, D) -> (B, H, W, D)
        x = x + cyclic_shift(h, -s)  # roll back, so every token returns to its place
        return x + self.ffn(self.ln2(x))  # (B, H, W, D)

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift={self.shift}"


class PatchMerging(nn.Module):
    """Concatenate each 2 x 2 group of tokens, LayerNorm the 4D features, project them to 2D: `norm, reduction`.

    The four neighbours go in the official order (0, 0), (1, 0), (0, 1), (1, 1) (row, column offset),
    so that pretrained weights load unchanged.

    Shapes: x (B, H, W, D) with H and W even -> (B, H/2, W/2, 2D)
    """

    def __init__(self, d_model: int, device=None, dtype=None):
        super().__init__()
        self.d_model = d_model
        self.norm = LayerNorm(4 * d_model, device=device, dtype=dtype)
        self.reduction = Linear(4 * d_model, 2 * d_model, device=device, dtype=dtype)  # no bias, as in the paper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.d_model, "PatchMerging")
        if x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(f"PatchMerging needs an even height and width to merge 2 x 2 groups, "
                             f"got a {x.shape[1]} x {x.shape[2]} map")
        neighbours = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]  # 4 x (B, H/2, W/2, D)
        x = torch.cat(neighbours, dim=-1)  # (B, H/2, W/2, 4D)
        return self.reduction(self.norm(x))  # (B, H/2, W/2, 4D) -> (B, H/2, W/2, 2D)


@dataclass
class SwinConfig:
    image_size: int  # images are image_size x image_size
    patch_size: int  # p: stage 1 sees (image_size / p)^2 tokens
    channels: int  # C: 1 for grey images, 3 for RGB
    num_classes: int
    d_model: int  # stage 1's width (the paper's C); every patch merging doubles it
    depths: tuple[int, ...]  # blocks per stage; within a stage W-MSA and SW-MSA alternate
    num_heads: tuple[int, ...]  # heads per stage
    window_size: int  # M: attention windows are M x M tokens
    mlp_ratio: int = 4  # the MLP's hidden width is mlp_ratio * width

    def resolutions(self) -> list[int]:
        """The side of each stage's square feature map."""
        return [self.image_size // self.patch_size // 2 ** i for i in range(len(self.depths))]


def swin_t_config(num_classes: int = 1000) -> SwinConfig:
    """Swin-T, the smallest model of the paper: 224 x 224 RGB, 4 x 4 patches, C = 96, M = 7."""
    return SwinConfig(224, 4, 3, num_classes, 96, (2, 2, 6, 2), (3, 6, 12, 24), 7)


class Swin(nn.Module):
    """`patch_embed, patch_norm, stages.{i}.{j}, merges.{i}, ln_final, head`: images in, class logits out.

    Stage i has width d_model * 2^i and works at resolution (image_size / p) / 2^i; patch merging
    links stage i to stage i + 1; the classifier reads the mean of the last stage's tokens.

    Shapes: images (B, C, S, S) with S = image_size -> logits (B, num_classes)
    """

    def __init__(self, config: SwinConfig, fused: bool = True, device=None, dtype=None):
        super().__init__()
        c, factory = config, dict(device=device, dtype=dtype)
        self.config = c
        if c.image_size % c.patch_size:
            raise ValueError(f"Swin: image_size={c.image_size} is not divisible by patch_size={c.patch_size}")
        if not c.depths or len(c.depths) != len(c.num_heads):
            raise ValueError(f"Swin: {len(c.depths)} depths but {len(c.num_heads)} head counts; give one per stage")
        self.patch_embed = PatchEmbedding(c.patch_size, c.channels, c.d_model, **factory)  # a strided conv, as a Linear
        self.patch_norm = LayerNorm(c.d_model, **factory)
        self.stages, self.merges = nn.ModuleList(), nn.ModuleList()
        for i, (depth, heads, side) in enumerate(zip(c.depths, c.num_heads, c.resolutions())):
            width = c.d_model * 2 ** i
            if width % heads:
                raise ValueError(f"Swin: stage {i} has width {width}, which num_heads={heads} does not divide")
            window = min(c.window_size, side)  # a map no larger than the window is one window...
            shift = c.window_size // 2 if side > c.window_size else 0  # ...that is never shifted
            check_windows(side, side, window, shift, who=f"Swin stage {i} ({side} x {side} tokens)")
            self.stages.append(nn.Sequential(*(
                SwinBlock(width, heads, window, shift if j % 2 else 0, c.mlp_ratio, fused=fused, **factory)
                for j in range(depth))))
            if i + 1 < len(c.depths):
                if side % 2:
                    raise ValueError(f"Swin: stage {i} has {side} x {side} tokens, an odd side that patch merging "
                                     "cannot halve; change image_size, patch_size or the number of stages")
                self.merges.append(PatchMerging(width, **factory))
        self.ln_final = LayerNorm(width, **factory)
        self.head = Linear(width, c.num_classes, bias=True, **factory)
        for name, p in self.named_parameters():  # the official initialisation: Linears N(0, 0.02), biases 0
            if p.ndim == 2 and "relative_position" not in name:
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
            elif name.endswith("bias") and not name.split(".")[-2].startswith(("ln", "norm", "patch_norm")):
                nn.init.zeros_(p)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's map. Shapes: (B, C, S, S) -> (B, S', S', D'), S' = S / p / 2^(stages - 1)"""
        c = self.config
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (
                c.channels, c.image_size, c.image_size):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"Swin expects images of shape (B, {c.channels}, {c.image_size}, {c.image_size}), "
                             f"got {shape}")
        side = c.image_size // c.patch_size
        x = self.patch_norm(self.patch_embed(images))  # (B, C, S, S) -> (B, P, D)
        x = x.view(x.shape[0], side, side, c.d_model)  # (B, P, D) -> (B, S/p, S/p, D): patches were row-major
        for i, stage in enumerate(self.stages):
            x = stage(x)  # (B, side, side, width)
            if i < len(self.merges):
                x = self.merges[i](x)  # (B, side, side, width) -> (B, side/2, side/2, 2 width)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.ln_final(self.features(images))  # (B, S', S', D')
        return self.head(x.mean(dim=(1, 2)))  # average over the map: (B, D') -> (B, num_classes)
