"""Muon (Jordan et al., 2024): momentum whose update for each weight matrix is orthogonalised.

For a weight matrix W with (Nesterov) momentum M, Muon steps along O = NS(M), approximately the
semi-orthogonal U V^T of M = U S V^T: the same directions as the momentum, each with size about one,
where Adam's update is dominated by a few large directions. NS is five Newton-Schulz iterations of
the quintic X <- a X + b (X X^T) X + c (X X^T)^2 X, with coefficients chosen to push every singular
value quickly into roughly [0.5, 1.5] (not exactly 1: that is enough, and far cheaper than an SVD).
The step is scaled by 0.2 sqrt(max(A, B)) so that its RMS matches an AdamW step (Liu et al., 2025,
"Muon is scalable for LLM training"): learning rate and weight decay then read like AdamW's.
Weight decay is decoupled, as in AdamW. Muon is for the matrices inside the network; embedding
tables, output heads, biases and norm gains stay with AdamW (tinycore.train.make_optimizer).

The update is that of `torch.optim.Muon(adjust_lr_fn="match_rms_adamw")` (PyTorch >= 2.9; tested
against it), and like it orthogonalises in bfloat16, which is accurate enough for an update
direction. It is computed differently: matrices of one shape are orthogonalised together in batched
products, where PyTorch's runs one matrix at a time. On a small model, where the optimiser's many
small operations cost more than their arithmetic, that makes a step markedly cheaper, and it runs on
any PyTorch the course supports.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

__all__ = ["Muon", "orthogonalise", "NS_COEFFICIENTS"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic, as in torch.optim.Muon


def orthogonalise(m: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Newton-Schulz: about U V^T for m = U S V^T, for a matrix or a batch of them.

    Shapes: m (..., A, B) -> (..., A, B)
    """
    if m.ndim < 2:
        raise ValueError(f"orthogonalise needs a matrix (..., A, B), got shape {tuple(m.shape)}")
    a, b, c = NS_COEFFICIENTS
    x = m.bfloat16()  # as in Keller Jordan's and PyTorch's Muon: an update direction needs few bits
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT  # (..., B, A): iterate on the wide side, where the Gram matrix X X^T is the smaller one
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # Frobenius norm 1, so every singular value <= 1
    for _ in range(steps):
        gram = x @ x.mT  # (..., A, A)
        x = a * x + (b * gram + c * gram @ gram) @ x  # each singular value s -> a s + b s^3 + c s^5
    return (x.mT if tall else x).to(m.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters: lr and weight_decay on AdamW's scale (see the module docstring)."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5):
        if lr < 0 or weight_decay < 0 or not 0 <= momentum < 1:
            raise ValueError(f"Muon needs lr >= 0, weight_decay >= 0 and 0 <= momentum < 1, got lr={lr}, "
                             f"weight_decay={weight_decay}, momentum={momentum}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon trains matrices only, got a parameter of shape {tuple(p.shape)}: "
                                     "give vectors and embedding tables to AdamW")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            by_shape = defaultdict(list)  # (A, B) -> [(parameter, its momentum update)]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buffer = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buffer.lerp_(p.grad, 1 - momentum)  # an average of past gradients
                update = p.grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                by_shape[tuple(p.shape)].append((p, update))
            for shape, items in by_shape.items():
                params = [p for p, _ in items]
                updates = orthogonalise(torch.stack([u for _, u in items]), group["ns_steps"])  # (n, A, B)
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])  # decoupled weight decay
                torch._foreach_add_(params, list(updates.unbind(0)), alpha=-lr * 0.2 * math.sqrt(max(shape)))
        return loss
