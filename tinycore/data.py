"""Text data for the language-model chapters: Tiny Shakespeare, a character tokenizer, batches.

Tiny Shakespeare (Karpathy's char-rnn corpus, public-domain text) ships inside the package and is
checked against its SHA-256 on load, so every reader trains on exactly the same bytes and nothing
is downloaded. Batches are random windows drawn with an explicit `torch.Generator`, so re-running a
cell gives the same batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import torch

from .layers import check_token_ids

__all__ = ["TINY_SHAKESPEARE_SHA256", "load_tiny_shakespeare", "CharTokenizer", "train_val_split", "get_batch"]

TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def _verified_text(raw: bytes, expected_sha256: str, name: str) -> str:
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha256:
        raise RuntimeError(
            f"{name} is corrupt or modified: its SHA-256 is {digest}, expected {expected_sha256}. "
            "Reinstall tinycore to restore it."
        )
    return raw.decode("ascii")


@lru_cache(maxsize=1)
def load_tiny_shakespeare() -> str:
    """The whole corpus as one string (1,115,394 ASCII characters, 65 distinct)."""
    raw = resources.files("tinycore").joinpath("assets/tinyshakespeare.txt").read_bytes()
    return _verified_text(raw, TINY_SHAKESPEARE_SHA256, "tinyshakespeare.txt")


class CharTokenizer:
    """One token per character; ids follow the sorted order of the characters seen in `text`."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self.itos = dict(enumerate(self.chars))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """str of length T -> LongTensor (T,)"""
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"CharTokenizer.encode: characters not in the vocabulary: {unknown!r}")
        return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """ids (T,) -> str of length T"""
        ids = torch.as_tensor(ids)
        if ids.ndim != 1:
            raise ValueError(f"CharTokenizer.decode expects a 1-D sequence of ids, got shape {tuple(ids.shape)}")
        check_token_ids(ids, self.vocab_size, what="ids")
        return "".join(self.itos[i] for i in ids.tolist())

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def train_val_split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The first (1 - val_fraction) of the sequence trains, the rest validates (no shuffling:
    neighbouring characters are correlated, so a random split would leak)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction should be in (0, 1), got {val_fraction}")
    n_train = int(len(data) * (1.0 - val_fraction))
    return data[:n_train], data[n_train:]


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    context_length: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """B random windows of length T from a 1-D token sequence, and the same windows shifted by one.

    Shapes: data (N,) -> x (B, T), y (B, T) with y[b, t] = data[start_b + t + 1]
    """
    if data.ndim != 1:
        raise ValueError(f"get_batch expects a 1-D token sequence, got shape {tuple(data.shape)}")
    if len(data) <= context_length:
        raise ValueError(
            f"get_batch: context_length={context_length} needs at least {context_length + 1} tokens, "
            f"the data has {len(data)}"
        )
    starts = torch.randint(len(data) - context_length, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(context_length)  # (T,)
    idx = starts[:, None] + offsets[None, :]  # (B, 1) + (1, T) -> (B, T)
    x, y = data[idx], data[idx + 1]  # (B, T) each
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y
