"""RMSNorm vs LayerNorm, tinycore's readable versions vs PyTorch's fused kernels.

    .venv/bin/python benchmarks/norms.py [--threads 2] [--repeats 30]

Chapter 3 says RMSNorm does less work than LayerNorm (no mean, no subtraction) and that PyTorch's
fused kernels beat a composition of elementwise ops. The chapters derive the compositions
(tinycore.layer_norm, tinycore.rms_norm); the modules tinycore.LayerNorm and tinycore.RMSNorm run
PyTorch's kernels (F.layer_norm, F.rms_norm) in float32. This measures both claims, forward + backward,
at two sizes, with every variant timed in interleaved rounds in one process so that they share the
machine's state; it reports medians and ratios to nn.LayerNorm, never absolute claims.
"""

from __future__ import annotations

import argparse

import torch
from timing import interleaved_medians
from torch import nn

from tinycore import LayerNorm, RMSNorm, layer_norm, rms_norm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, forward + backward, median of {args.repeats} rounds")
    for shape in [(8, 128, 128), (16, 256, 512)]:
        d = shape[-1]
        variants = {
            "nn.LayerNorm (fused)": nn.LayerNorm(d),
            "nn.RMSNorm": nn.RMSNorm(d, eps=1e-5),
            "tinycore.LayerNorm": LayerNorm(d),
            "tinycore.RMSNorm": RMSNorm(d),
            # the chapters' compositions of elementwise ops, with a gain (and bias) as the modules have
            "tinycore.layer_norm": lambda x, w=torch.ones(d, requires_grad=True), b=torch.zeros(d, requires_grad=True):
                layer_norm(x, w, b),
            "tinycore.rms_norm": lambda x, w=torch.ones(d, requires_grad=True): rms_norm(x, w),
        }
        x = torch.randn(shape, generator=gen).requires_grad_(True)
        grad = torch.randn(shape, generator=gen)
        medians = interleaved_medians(
            {name: (lambda m=module: m(x).backward(grad)) for name, module in variants.items()}, args.repeats
        )
        base = medians["nn.LayerNorm (fused)"]
        print(f"\nx {shape}")
        for name, median in medians.items():
            print(f"  {name:<22} {median * 1e3:8.3f} ms   {median / base:5.2f} x nn.LayerNorm")


if __name__ == "__main__":
    main()
