"""From-scratch vs fused attention, forward + backward, at two sizes.

    .venv/bin/python benchmarks/attention.py [--threads 2] [--repeats 20]

tinycore's attention has two paths that tests hold equal: the from-scratch one the chapters
derive (scores, mask, softmax, weighted sum: the whole (T, T) matrix is materialised) and
`F.scaled_dot_product_attention` (PyTorch's fused kernels). This measures their ratio, timed in
interleaved rounds in one process so both see the same machine state, for the bare function
with a causal mask and for a whole MultiHeadSelfAttention layer.
"""

from __future__ import annotations

import argparse

import torch
from timing import interleaved_medians

from tinycore import MultiHeadSelfAttention, causal_mask, scaled_dot_product_attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, forward + backward, median of {args.repeats} rounds")
    for B, H, T, Dh in [(8, 4, 128, 32), (4, 8, 512, 64)]:
        q, k, v = (torch.randn(B, H, T, Dh, generator=gen).requires_grad_(True) for _ in range(3))
        mask = causal_mask(T)
        layer = MultiHeadSelfAttention(H * Dh, H)
        x = torch.randn(B, T, H * Dh, generator=gen).requires_grad_(True)

        def function(fused):
            return lambda: scaled_dot_product_attention(q, k, v, mask, fused=fused).sum().backward()

        def module(fused):
            def run():
                layer.fused = fused
                layer(x).sum().backward()
            return run

        variants = {
            "sdpa, from scratch": function(False), "sdpa, fused": function(True),
            "MultiHeadSelfAttention, from scratch": module(False), "MultiHeadSelfAttention, fused": module(True),
        }
        medians = interleaved_medians(variants, args.repeats)
        print(f"\nB={B}, H={H}, T={T}, Dh={Dh} (causal)")
        for name, median in medians.items():
            print(f"  {name:<38} {median * 1e3:8.2f} ms")
        for what in ("sdpa", "MultiHeadSelfAttention"):
            ratio = medians[f"{what}, from scratch"] / medians[f"{what}, fused"]
            print(f"  {what}: from scratch / fused = {ratio:.2f}")


if __name__ == "__main__":
    main()
