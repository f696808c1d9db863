"""The Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"): an image cut
into patches, each patch flattened and projected to a token, a learned [CLS] token in front, learned
position embeddings added, a stack of pre-norm encoder blocks, and a classifier reading the [CLS]
token's final state:

    z_0 = [x_cls; x_p^1 E; ...; x_p^P E] + E_pos        E (C p p, D), E_pos (P + 1, D)
    z_l = z_{l-1} + MSA(LN(z_{l-1})),  z_l = z_l + MLP(LN(z_l))     l = 1..L
    y = head(LN(z_L^0))

The patch embedding is a Linear over each flattened patch in (c, p1, p2) order, i.e. exactly a
Conv2d with kernel size and stride p whose weight (D, C, p, p) is reshaped to (D, C p p): the
weight layout of PyTorch's Conv2d (and of Hugging Face's and timm's ViT) carries over unchanged.

Deviations: no dropout; the head is a single Linear (the paper pre-trains with an MLP head of one
hidden layer and fine-tunes with a single Linear, as here); fixed image size (no interpolation of
the position embeddings to other resolutions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .blocks import TransformerBlock
from .layers import Linear
from .norms import LayerNorm

__all__ = ["ViTConfig", "PatchEmbedding", "ViT", "patchify"]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping p x p patches, row by row, each flattened in (c, p1, p2) order.

    Shapes: images (B, C, H, W) -> (B, P, C p p), P = (H / p) (W / p)
    """
    if images.ndim != 4:
        raise ValueError(f"patchify expects images of shape (B, C, H, W), got {tuple(images.shape)}")
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"patchify: the image size {H}x{W} is not divisible by the patch size {p}")
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, H/p, p1, W/p, p2)
    x = x.permute(0, 2, 4, 1, 3, 5)  # -> (B, H/p, W/p, C, p1, p2): patch index first, then its pixels
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # -> (B, P, C p p)


class PatchEmbedding(nn.Module):
    """Each p x p patch, flattened in (c, p1, p2) order, through one Linear `proj` (with bias).

    Equal to nn.Conv2d(C, D, kernel_size=p, stride=p) with proj.weight = conv.weight.reshape(D, -1).

    Shapes: images (B, C, H, W) -> (B, P, D)
    """

    def __init__(self, patch_size: int, channels: int, d_model: int, device=None, dtype=None):
        super().__init__()
        self.patch_size, self.channels, self.d_model = patch_size, channels, d_model
        self.proj = Linear(channels * patch_size * patch_size, d_model, bias=True, device=device, dtype=dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(f"PatchEmbedding expects images of shape (B, C={self.channels}, H, W), "
                             f"got {tuple(images.shape)}")
        return self.proj(patchify(images, self.patch_size))  # (B, C, H, W) -> (B, P, C p p) -> (B, P, D)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, channels={self.channels}, d_model={self.d_model}"


@dataclass
class ViTConfig:
    image_size: int  # images are image_size x image_size
    patch_size: int  # p: patches are p x p, so P = (image_size / p)^2 tokens plus [CLS]
    channels: int  # C: 1 for grey images, 3 for RGB
    num_classes: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int  # the FFN's hidden width F (4D in the paper)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class ViT(nn.Module):
    """`patch_embed, cls_token, pos_embedding, layers.{i}, ln_final, head`: images in, class logits out.

    The blocks are tinycore's TransformerBlock without a causal mask, pre-norm, with LayerNorm, a
    GELU FFN and biases, as in the paper. Initialisation follows the reference code: weights of the
    Linears ~ N(0, 0.02) truncated at 2 std, biases 0; [CLS] and positions ~ N(0, 0.02).

    Shapes: images (B, C, H, W) with H = W = image_size -> logits (B, num_classes)
    """

    def __init__(self, image_size: int, patch_size: int, channels: int, num_classes: int, d_model: int,
                 num_layers: int, num_heads: int, d_ff: int, *, fused: bool = True, device=None, dtype=None):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"ViT: image_size={image_size} is not divisible by patch_size={patch_size}; "
                             "the image must tile exactly into patches")
        if d_model % num_heads:
            raise ValueError(f"ViT: d_model={d_model} is not divisible by num_heads={num_heads}")
        self.config = ViTConfig(image_size, patch_size, channels, num_classes, d_model, num_layers, num_heads, d_ff)
        factory = dict(device=device, dtype=dtype)
        num_tokens = self.config.num_patches + 1  # P patches and [CLS]
        self.patch_embed = PatchEmbedding(patch_size, channels, d_model, **factory)
        self.cls_token = nn.Parameter(torch.zeros(d_model, **factory))  # (D,): the same learned vector for every image
        self.pos_embedding = nn.Parameter(torch.zeros(num_tokens, d_model, **factory))  # (P + 1, D), [CLS] first
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ff, causal=False, norm="layernorm", ffn="gelu", bias=True,
                             fused=fused, **factory)
            for _ in range(num_layers)
        )
        self.ln_final = LayerNorm(d_model, **factory)
        self.head = Linear(d_model, num_classes, bias=True, **factory)  # (num_classes, D)
        self._init_weights()

    @classmethod
    def from_config(cls, config: ViTConfig, **kwargs) -> "ViT":
        return cls(**asdict(config), **kwargs)

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("bias") and p.ndim == 1 and "ln" not in name:
                nn.init.zeros_(p)
            elif p.ndim == 2 and not name.endswith("pos_embedding"):  # the Linears' weights
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embedding, std=0.02)

    def _check(self, images: torch.Tensor) -> None:
        c = self.config
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"ViT expects images of shape (B, C, H, W), got {shape}")
        if images.shape[1] != c.channels:
            raise ValueError(f"ViT was built for {c.channels} channel(s), but the images have {images.shape[1]}: "
                             f"shape {tuple(images.shape)}")
        if tuple(images.shape[2:]) != (c.image_size, c.image_size):
            raise ValueError(f"ViT was built for {c.image_size}x{c.image_size} images, got "
                             f"{images.shape[2]}x{images.shape[3]}; its position embeddings fix the image size")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's input z_0: [CLS] and the patch tokens, plus positions. (B, C, H, W) -> (B, P + 1, D)"""
        self._check(images)
        x = self.patch_embed(images)  # (B, C, H, W) -> (B, P, D)
        cls = self.cls_token.expand(x.shape[0], 1, -1)  # (D,) -> (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, P + 1, D), [CLS] at position 0
        return x + self.pos_embedding  # (B, P + 1, D) + (P + 1, D)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)  # (B, P + 1, D)
        for layer in self.layers:
            x = layer(x)  # (B, P + 1, D)
        return self.head(self.ln_final(x[:, 0]))  # the [CLS] token: (B, D) -> (B, num_classes)

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Every layer's attention weights, [CLS] at index 0. (B, C, H, W) -> (L, B, H, P + 1, P + 1)"""
        x, maps = self.embed(images), []
        for layer in self.layers:
            maps.append(layer.attn.attention_weights(layer.ln1(x)))  # (B, H, P + 1, P + 1)
            x = layer(x)
        return torch.stack(maps)  # (L, B, H, P + 1, P + 1)
