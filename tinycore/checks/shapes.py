"""Checkers for chapter 0 (tensors, broadcasting, indexing)."""

from __future__ import annotations

import torch

from .core import Case, Diagnosis, check_function

__all__ = ["pairwise_sq_dists", "last_token", "masked_mean"]


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def pairwise_sq_dists(fn) -> None:
    """fn(x (N, D), y (M, D)) -> (N, M) with out[i, j] = ||x[i] - y[j]||^2."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(0)
    cases = [
        Case((_randn(gen, n, d, scale=s), _randn(gen, m, d, scale=s)), f"x ({n}, {d}), y ({m}, {d}), values ~{s:g}")
        for n, m, d, s in [(3, 5, 4, 1.0), (1, 6, 7, 1.0), (8, 8, 16, 10.0), (5, 2, 1, 0.1)]
    ]

    def reference(x, y):  # an independent oracle, computed in float64
        return torch.cdist(x.double(), y.double()).pow(2).to(x.dtype)

    check_function(
        "pairwise_sq_dists", fn, reference, cases, grad=True, arg_names=("x", "y"),
        hint="give x and y each a new axis of size 1 so that their difference broadcasts to (N, M, D).",
        diagnoses=[
            Diagnosis(lambda x, y: torch.cdist(x, y), "you return the distance; the exercise asks for its square."),
            Diagnosis(
                lambda x, y: torch.cdist(x, y).pow(2).sum(dim=1, keepdim=True).expand(-1, y.shape[0]),
                "every row is the same: did you sum over the wrong axis?",
            ),
        ],
    )


def last_token(fn) -> None:
    """fn(x (B, T, D), lengths (B,) long) -> (B, D): the last real (non-padding) position of each row."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(1)
    cases = []
    for b, t, d in [(4, 6, 3), (1, 5, 2), (3, 9, 8)]:
        lengths = torch.randint(1, t + 1, (b,), generator=gen)
        lengths[0] = t  # one full-length row, one length-1 row: the edges off-by-one bugs trip on
        if b > 1:
            lengths[-1] = 1
        cases.append(Case((_randn(gen, b, t, d), lengths), f"x ({b}, {t}, {d}), lengths {lengths.tolist()}"))

    def reference(x, lengths):  # the obvious loop, as an oracle
        return torch.stack([x[b, int(n) - 1] for b, n in enumerate(lengths)])

    check_function(
        "last_token", fn, reference, cases, grad=True, arg_names=("x",),
        hint=(
            "a row of length n has its last real token at index n - 1 (not n); to pick one position per "
            "row, index the batch axis and the time axis together with two index tensors of shape (B,)."
        ),
        diagnoses=[
            Diagnosis(lambda x, lengths: x[:, -1], "you took the last position of every row, padding included."),
        ],
    )


def masked_mean(fn) -> None:
    """fn(x (B, T, D), mask (B, T) bool, True = real token) -> (B, D): the mean over real tokens."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(2)
    cases = []
    for b, t, d in [(3, 5, 4), (2, 7, 1), (4, 3, 6)]:
        mask = torch.rand(b, t, generator=gen) < 0.6
        mask[:, 0] = True  # every row has at least one real token ...
        mask[0, -1] = False  # ... and at least one row has padding
        shown = "".join("1" if v else "0" for v in mask[0].tolist())
        cases.append(Case((_randn(gen, b, t, d), mask), f"x ({b}, {t}, {d}), mask (B, T), row 0 = {shown}"))

    def reference(x, mask):
        return torch.stack([x[b][mask[b]].mean(dim=0) for b in range(x.shape[0])])

    check_function(
        "masked_mean", fn, reference, cases, grad=True, arg_names=("x",),
        hint="zero out the padding, sum over T, and divide by the number of real tokens in each row.",
        diagnoses=[
            Diagnosis(lambda x, mask: x.mean(dim=1), "you averaged over every position, padding included."),
            Diagnosis(
                lambda x, mask: (x * mask[..., None]).sum(dim=1) / x.shape[1],
                "you divided by T; divide by how many tokens are real in each row.",
            ),
            Diagnosis(
                lambda x, mask: (x * (~mask)[..., None]).sum(dim=1) / (~mask).sum(dim=1, keepdim=True).clamp(min=1),
                "the mask is inverted: True marks the real tokens.",
            ),
        ],
    )
