"""The bigram language model: the baseline every later model has to beat.

A bigram model predicts the next token from the current one only, so it is a V x V table of
logits. Counting pairs in the training text gives the best such table in closed form; training
an `Embedding(V, V)` by gradient descent should find (nearly) the same loss, which chapter 1 shows.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Embedding, check_token_ids

__all__ = ["bigram_counts", "count_model_loss", "BigramLM"]


def bigram_counts(token_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """counts[i, j] = how often token j directly follows token i.

    Shapes: token_ids (N,) -> counts (V, V) long
    """
    check_token_ids(token_ids, vocab_size)
    if token_ids.ndim != 1:
        raise ValueError(f"bigram_counts expects a 1-D token sequence, got shape {tuple(token_ids.shape)}")
    pairs = token_ids[:-1] * vocab_size + token_ids[1:]  # (N-1,) flat index of (current, next)
    return torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)


def count_model_loss(counts: torch.Tensor, token_ids: torch.Tensor, smoothing: float = 1.0) -> float:
    """Mean negative log-likelihood (nats/token) of `token_ids` under the smoothed count model
    P(j | i) = (counts[i, j] + smoothing) / sum_j' (counts[i, j'] + smoothing)."""
    probs = counts.double() + smoothing  # (V, V); add-alpha smoothing keeps unseen pairs possible
    probs = probs / probs.sum(dim=1, keepdim=True)
    nll = -probs[token_ids[:-1], token_ids[1:]].log()  # (N-1,)
    return nll.mean().item()


class BigramLM(nn.Module):
    """Logits for the next token are one row of a learnable (V, V) table.

    Shapes: token_ids (B, T) -> logits (B, T, V)
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        self.token_embeddings = Embedding(vocab_size, vocab_size)
        nn.init.zeros_(self.token_embeddings.weight)  # start uniform: loss = log V exactly

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.token_embeddings(token_ids)  # (B, T) -> (B, T, V)
