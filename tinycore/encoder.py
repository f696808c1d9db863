"""An encoder-only transformer in the style of BERT (Devlin et al., 2019): no causal mask, so every
token attends to every real token on its left *and* its right, and each output vector describes its
token in the context of the whole sequence.

    x = token_embeddings[ids] + position_embeddings[0..T-1]
    x = Block_l(x, key mask)  for l = 0..L-1     (TransformerBlock with causal=False)
    h = ln_final(x)

Two heads read h. The masked-language-model head (`mlm_logits`) scores the vocabulary at every
position; `mask_tokens` hides about 15% of the tokens (80% become [MASK], 10% a random token, 10%
stay as they are) and `masked_lm_loss` averages the cross-entropy over those positions only. The
classifier (`classify`) reads the final state of the [CLS] token, which every input starts with.

Padding: `padding_mask` (B, T) bool, True = real token, becomes a key mask (B, 1, 1, T), so no query
attends to a padding position and the states of real tokens do not depend on how much padding
follows. PyTorch's `src_key_padding_mask` has the opposite polarity: True = padding, ignore it.

Deviations from BERT: pre-norm blocks with a final LayerNorm (BERT is post-norm, with a LayerNorm on
the embeddings); no segment embeddings, no next-sentence prediction, no dropout; the masked-LM head is
one Linear (BERT adds a dense layer, GELU and LayerNorm, and ties the output matrix to the token
embeddings); the classifier reads the [CLS] state directly (BERT's pooler adds a tanh layer first).
`causal=True` gives the same stack a causal mask: the decoder-style control of chapter 10.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import TransformerBlock
from .layers import Embedding, Linear, check_token_ids
from .norms import LayerNorm
from .positions import LearnedPositionalEmbedding

__all__ = ["EncoderConfig", "TransformerEncoder", "key_padding_mask", "mask_tokens", "masked_lm_loss"]


@dataclass
class EncoderConfig:
    vocab_size: int  # special tokens ([CLS], [MASK], [PAD], ...) included
    context_length: int  # the longest input the model accepts, [CLS] included
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int  # the FFN's hidden width F (BERT: 4D)
    num_classes: int | None = None  # outputs of the [CLS] classifier; None: no classifier
    cls_id: int | None = None  # the [CLS] token's id: classify() checks that every input starts with it
    causal: bool = False  # True: a causal mask, as in a decoder (the control experiment)


def key_padding_mask(padding_mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A (B, T) "is a real token" mask turned into a key mask that broadcasts over heads and queries.

    Shapes: padding_mask (B, T) bool -> (B, 1, 1, T) bool
    """
    if not isinstance(padding_mask, torch.Tensor) or padding_mask.dtype != torch.bool:
        got = padding_mask.dtype if isinstance(padding_mask, torch.Tensor) else type(padding_mask).__name__
        raise TypeError(f"padding_mask must be a bool tensor, True = real token, got {got} (PyTorch's "
                        "src_key_padding_mask is the opposite, True = padding: pass ~mask)")
    if tuple(padding_mask.shape) != tuple(shape):
        raise ValueError(f"padding_mask has shape {tuple(padding_mask.shape)}, expected token_ids' shape (B, T) = "
                         f"{tuple(shape)}")
    empty = (~padding_mask.any(dim=1)).nonzero().flatten().tolist()  # rows without a single real token
    if empty:
        raise ValueError(f"padding_mask: row(s) {empty} are all padding, so they have nothing to attend to; "
                         "every input needs at least one real token")
    return padding_mask[:, None, None, :]  # (B, T) -> (B, 1, 1, T): the same keys for every head and query


def mask_tokens(token_ids: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator | None = None,
                mask_prob: float = 0.15, maskable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: choose each position with probability `mask_prob` (only where `maskable`);
    of those, 80% become `mask_id`, 10% a random id in [0, vocab_size), 10% keep their token.

    Returns (inputs, is_masked): the corrupted ids, and where the masked-LM loss is taken.
    Shapes: token_ids (B, T) -> inputs (B, T) long, is_masked (B, T) bool
    """
    shape = token_ids.shape
    chosen = torch.rand(shape, generator=generator) < mask_prob  # (B, T): Bernoulli(mask_prob) per position
    fate = torch.rand(shape, generator=generator)  # (B, T): < 0.8 [MASK], >= 0.9 random, else unchanged
    random_ids = torch.randint(vocab_size, shape, generator=generator)  # (B, T)
    chosen, fate, random_ids = chosen.to(token_ids.device), fate.to(token_ids.device), random_ids.to(token_ids.device)
    if maskable is not None:
        chosen = chosen & maskable  # e.g. not [CLS], not padding
    inputs = torch.where(chosen & (fate < 0.8), torch.full_like(token_ids, mask_id), token_ids)
    inputs = torch.where(chosen & (fate >= 0.9), random_ids, inputs)  # the model cannot trust unmasked-looking tokens
    return inputs, chosen


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, is_masked: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions only: nats per masked token.

    Shapes: logits (B, T, V), targets (B, T), is_masked (B, T) bool -> ()
    """
    if logits.shape[:-1] != targets.shape or targets.shape != is_masked.shape:
        raise ValueError(f"masked_lm_loss: logits {tuple(logits.shape)} should be (B, T, V), with targets "
                         f"{tuple(targets.shape)} and is_masked {tuple(is_masked.shape)} both (B, T)")
    if is_masked.dtype != torch.bool or not is_masked.any():
        raise ValueError("masked_lm_loss needs a bool is_masked with at least one True: the loss is taken over the "
                         "masked positions only")
    return F.cross_entropy(logits[is_masked], targets[is_masked])  # (N, V) and (N,) -> (): N masked positions


class TransformerEncoder(nn.Module):
    """`token_embeddings, position_embeddings, layers.{i}, ln_final`, with `mlm_head` and `cls_head`.

    forward returns the final states; `mlm_logits` and `classify` apply the heads.
    Shapes: token_ids (B, T), padding_mask (B, T) bool or None -> states (B, T, D), T <= context_length
    """

    def __init__(self, vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
                 d_ff: int, *, num_classes: int | None = None, cls_id: int | None = None, causal: bool = False,
                 device=None, dtype=None):
        super().__init__()
        self.config = EncoderConfig(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, num_classes,
                                    cls_id, causal)
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if (num_classes is None) != (cls_id is None):
            raise ValueError("a classifier needs both num_classes and cls_id (the id every input starts with)")
        if cls_id is not None and not 0 <= cls_id < vocab_size:
            raise ValueError(f"cls_id={cls_id} is outside the vocabulary [0, {vocab_size})")
        factory = dict(device=device, dtype=dtype)
        self.token_embeddings = Embedding(vocab_size, d_model, **factory)  # (V, D)
        self.position_embeddings = LearnedPositionalEmbedding(context_length, d_model, **factory)  # (L, D)
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ff, causal=causal, norm="layernorm", ffn="gelu", bias=True,
                             **factory)
            for _ in range(num_layers)
        )
        self.ln_final = LayerNorm(d_model, **factory)
        self.mlm_head = Linear(d_model, vocab_size, bias=True, **factory)  # (V, D)
        self.cls_head = Linear(d_model, num_classes, bias=True, **factory) if num_classes else None  # (C, D)
        for name, p in self.named_parameters():  # BERT's initialisation
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:  # matrices and embedding tables; LayerNorm gains stay 1
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)

    @classmethod
    def from_config(cls, config: EncoderConfig, **kwargs) -> "TransformerEncoder":
        return cls(**asdict(config), **kwargs)

    def _embed(self, token_ids: torch.Tensor, padding_mask: torch.Tensor | None):
        """The input to the first block and the key mask for every block (None: attend everywhere)."""
        if token_ids.ndim != 2:
            raise ValueError(f"TransformerEncoder expects token_ids of shape (B, T), got {tuple(token_ids.shape)}")
        check_token_ids(token_ids, self.config.vocab_size)
        T = token_ids.shape[1]
        if T > self.config.context_length:
            raise ValueError(f"TransformerEncoder: {T} tokens exceed context_length={self.config.context_length}")
        mask = None if padding_mask is None else key_padding_mask(padding_mask, token_ids.shape)  # (B, 1, 1, T)
        positions = torch.arange(T, device=token_ids.device)  # (T,)
        x = self.token_embeddings(token_ids) + self.position_embeddings(positions)  # (B, T, D) + (T, D)
        return x, mask

    def forward(self, token_ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = self._embed(token_ids, padding_mask)  # (B, T, D), (B, 1, 1, T)
        for layer in self.layers:
            x = layer(x, mask=mask)  # (B, T, D): the blocks combine the key mask with a causal one if causal
        return self.ln_final(x)  # (B, T, D)

    def mlm_logits(self, token_ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores over the vocabulary at every position. Shapes: (B, T) -> (B, T, V)"""
        return self.mlm_head(self(token_ids, padding_mask))  # (B, T, D) -> (B, T, V)

    def classify(self, token_ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Class scores from the final state of [CLS] at position 0. Shapes: (B, T) -> (B, num_classes)"""
        if self.cls_head is None:
            raise RuntimeError("this encoder has no classifier: build it with num_classes and cls_id")
        if token_ids.ndim == 2 and not bool((token_ids[:, 0] == self.config.cls_id).all()):
            raise ValueError(f"classify reads position 0, so every input must start with [CLS] "
                             f"(id {self.config.cls_id})")
        states = self(token_ids, padding_mask)  # (B, T, D)
        return self.cls_head(states[:, 0])  # (B, D) -> (B, C)

    def attention_maps(self, token_ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Every layer's attention weights, for plotting. Shapes: (B, T) -> (num_layers, B, H, T, T)"""
        x, mask = self._embed(token_ids, padding_mask)
        maps = []
        for layer in self.layers:
            maps.append(layer.attn.attention_weights(layer.ln1(x), mask=mask))  # (B, H, T, T): pre-norm input
            x = layer(x, mask=mask)  # (B, T, D)
        return torch.stack(maps)  # L x (B, H, T, T) -> (L, B, H, T, T)
