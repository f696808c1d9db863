"""A quick self-test of every tinycore module against PyTorch's own implementation.

Chapter 0 runs it so that a reader knows, before anything else, that the package they installed
agrees with PyTorch on their machine and device. The real tests live in the repository's tests/.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .bigram import bigram_counts
from .data import CharTokenizer, load_tiny_shakespeare
from .layers import Embedding, Linear
from .norms import LayerNorm, RMSNorm

__all__ = ["self_test"]


def _max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item()


def self_test(device: torch.device | str = "cpu", verbose: bool = True) -> dict[str, bool]:
    """Compare each module with its PyTorch counterpart on `device`; return {check: passed}."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 16, generator=gen).to(device)
    results = {}

    linear = Linear(16, 8, device=device)
    results["layers.Linear == F.linear"] = _max_error(linear(x), F.linear(x, linear.weight)) < 1e-5
    emb = Embedding(10, 16, device=device)
    ids = torch.randint(10, (2, 5), generator=gen).to(device)
    results["layers.Embedding == F.embedding"] = _max_error(emb(ids), F.embedding(ids, emb.weight)) < 1e-6
    results["norms.LayerNorm == F.layer_norm"] = _max_error(LayerNorm(16, device=device)(x), F.layer_norm(x, (16,))) < 1e-5
    results["norms.RMSNorm == F.rms_norm"] = _max_error(RMSNorm(16, device=device)(x), F.rms_norm(x, (16,), eps=1e-5)) < 1e-5
    text = load_tiny_shakespeare()  # verifies the checksum
    tok = CharTokenizer(text)
    results["data: corpus checksum, tokenizer round trip"] = tok.decode(tok.encode(text[:1000])) == text[:1000]
    counts = bigram_counts(tok.encode(text[:1000]), tok.vocab_size)
    results["bigram.bigram_counts sums to N - 1"] = int(counts.sum()) == 999

    if verbose:
        for name, ok in results.items():
            print(f"{'✅' if ok else '❌'} {name}")
    return results
