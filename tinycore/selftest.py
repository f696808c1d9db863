"""A quick self-test of every tinycore module against PyTorch's own implementation.

Chapter 0 runs it so that a reader knows, before anything else, that the package they installed
agrees with PyTorch on their machine and device. The real tests live in the repository's tests/.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import gelu, softmax
from .attention import MultiHeadSelfAttention, causal_mask, scaled_dot_product_attention
from .bigram import bigram_counts
from .data import CharTokenizer, load_tiny_shakespeare
from .layers import Embedding, Linear
from .ffn import SwiGLU
from .norms import LayerNorm, RMSNorm
from .positions import RotaryEmbedding

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
    results["activations: softmax, gelu == torch's"] = (
        _max_error(softmax(x), torch.softmax(x, -1)) < 1e-6 and _max_error(gelu(x), F.gelu(x)) < 1e-5
    )
    ffn = SwiGLU(16, 24, device=device)
    swiglu_ref = F.linear(F.silu(F.linear(x, ffn.w1.weight)) * F.linear(x, ffn.w3.weight), ffn.w2.weight)
    results["ffn.SwiGLU == its formula with F.silu"] = _max_error(ffn(x), swiglu_ref) < 1e-5
    q = x.view(2, 5, 4, 4).transpose(1, 2)  # (B, T, D) -> (B, H, T, Dh)
    mask = causal_mask(5, device=device)
    results["attention == F.scaled_dot_product_attention"] = _max_error(
        scaled_dot_product_attention(q, q, q, mask), F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    ) < 1e-5
    attn = MultiHeadSelfAttention(16, 4, device=device)
    fused = attn(x)
    attn.fused = False
    results["attention: fused path == from-scratch path"] = _max_error(fused, attn(x)) < 1e-5
    rope = RotaryEmbedding(10000.0, 4, 8, device=device)
    q0, k0 = q[..., :1, :], q[..., 1:2, :]  # (B, H, 1, Dh): one query and one key per head

    def score(m: int, n: int) -> float:  # the query at position m against the key at position n
        pos = torch.tensor([m], device=device), torch.tensor([n], device=device)
        return (rope(q0, pos[0]) * rope(k0, pos[1])).sum().item()

    results["positions.RotaryEmbedding: scores depend on offsets only"] = (
        abs(score(2, 0) - score(5, 3)) < 1e-4 and abs(score(2, 0) - (q0 * k0).sum().item()) > 1e-3
    )
    text = load_tiny_shakespeare()  # verifies the checksum
    tok = CharTokenizer(text)
    results["data: corpus checksum, tokenizer round trip"] = tok.decode(tok.encode(text[:1000])) == text[:1000]
    counts = bigram_counts(tok.encode(text[:1000]), tok.vocab_size)
    results["bigram.bigram_counts sums to N - 1"] = int(counts.sum()) == 999

    if verbose:
        for name, ok in results.items():
            print(f"{'✅' if ok else '❌'} {name}")
    return results
