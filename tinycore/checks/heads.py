"""Checkers for chapter 6 (multi-head attention): splitting and merging heads, sharing key/value heads.

The references are plain loops over heads (slices and `torch.cat`), independent of tinycore's
`split_heads` / `merge_heads` and of `repeat_interleave`. Every case gives every dimension a different
size, so that a transpose, a `view` in the wrong order or a tiled repeat cannot pass by coincidence.
"""

from __future__ import annotations

import torch

from .core import Case, Diagnosis, check_function, fail

__all__ = ["split_heads", "merge_heads", "repeat_kv"]


def _run(name, fn, reference, cases, *, wrong_shapes, **kwargs) -> None:
    """check_function (values and gradients), naming the known wrong shapes (a missing transpose)."""
    __tracebackhide__ = True

    def screen(got, want, case):
        __tracebackhide__ = True
        if tuple(got.shape) != tuple(want.shape):
            for shape, shape_hint in wrong_shapes(*case.args):
                if tuple(got.shape) == tuple(shape):
                    raise fail(f"{name}'s output has shape {tuple(got.shape)}, expected {tuple(want.shape)}", case, shape_hint)
        return got

    check_function(name, fn, reference, cases, grad=True, rtol=0.0, atol=1e-6, screen=screen, **kwargs)


# ---------- split_heads: (B, T, D) -> (B, H, T, Dh), head-major ----------

def _split_reference(x, num_heads):
    dh = x.shape[-1] // num_heads
    return torch.stack([x[:, :, h * dh:(h + 1) * dh] for h in range(num_heads)], dim=1)  # H x (B, T, Dh) -> (B, H, T, Dh)


def _split_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(60)
    cases = []
    for B, T, H, Dh in [(2, 5, 3, 4), (3, 7, 2, 5), (4, 6, 8, 3), (1, 9, 5, 2)]:  # every size different within a case
        x = torch.randn(B, T, H * Dh, generator=gen)
        cases.append(Case((x, H), f"x (B={B}, T={T}, D={H * Dh}), num_heads={H} (so Dh={Dh})"))
    return cases


def split_heads(fn) -> None:
    """fn(x (B, T, D), num_heads) -> (B, H, T, Dh) with features [h * Dh, (h + 1) * Dh) in head h."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _run(
        "split_heads", fn, _split_reference, _split_cases(), arg_names=("x",),
        hint=("view the last axis as (H, Dh), with H first so that head h gets features h*Dh to (h+1)*Dh - 1, "
              "then swap the T and H axes."),
        wrong_shapes=lambda x, H: [
            ((x.shape[0], x.shape[1], H, x.shape[2] // H),
             "that is (B, T, H, Dh): you split the features but did not move the head axis in front of T (transpose(1, 2))."),
            ((x.shape[0], x.shape[1], x.shape[2] // H, H),
             "that is (B, T, Dh, H): the last axis should be split as (H, Dh), and then H moved in front of T."),
        ],
        diagnoses=[
            Diagnosis(lambda x, H: x.view(x.shape[0], x.shape[1], x.shape[2] // H, H).permute(0, 3, 1, 2),
                      "the heads are interleaved: you split the features as (Dh, H), so head h got features h, h+H, h+2H, ... "
                      "Head-major means (H, Dh): head h owns the contiguous block h*Dh to (h+1)*Dh - 1."),
            Diagnosis(lambda x, H: x.reshape(x.shape[0], H, x.shape[1], x.shape[2] // H),
                      "you reshaped straight to (B, H, T, Dh) without a transpose, which fills row t of a head with "
                      "another token's features (often a later token's, so the future leaks into the past). Split the "
                      "feature axis first, view(B, T, H, Dh), then transpose(1, 2)."),
            Diagnosis(lambda x, H: x.transpose(1, 2).reshape(x.shape[0], H, x.shape[1], x.shape[2] // H),
                      "you transposed first and then reshaped (B, D, T) into (B, H, T, Dh), which mixes tokens and "
                      "features: split the feature axis first, view(B, T, H, Dh), and only then transpose(1, 2)."),
        ],
    )


# ---------- merge_heads: (B, H, T, Dh) -> (B, T, H * Dh), the inverse ----------

def _merge_reference(x):
    return torch.cat([x[:, h] for h in range(x.shape[1])], dim=-1)  # H x (B, T, Dh) -> (B, T, H * Dh)


def _merge_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(61)
    cases = []
    for B, H, T, Dh in [(2, 3, 5, 4), (3, 2, 7, 5), (4, 8, 6, 3), (1, 5, 9, 2)]:
        x = torch.randn(B, H, T, Dh, generator=gen)
        cases.append(Case((x,), f"x (B={B}, H={H}, T={T}, Dh={Dh})"))
    return cases


def merge_heads(fn) -> None:
    """fn(x (B, H, T, Dh)) -> (B, T, H * Dh): head h's output in features [h * Dh, (h + 1) * Dh)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _run(
        "merge_heads", fn, _merge_reference, _merge_cases(), arg_names=("x",),
        hint=("bring T back in front of H first (transpose(1, 2)), then flatten (H, Dh) into one axis; after a "
              "transpose the tensor is not contiguous, so use reshape (or .contiguous().view)."),
        wrong_shapes=lambda x: [
            ((x.shape[0], x.shape[2], x.shape[1], x.shape[3]),
             "that is (B, T, H, Dh): you moved the axes back but did not flatten the last two into H * Dh."),
        ],
        diagnoses=[
            Diagnosis(lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]),
                      "you reshaped without transposing back first, which fills token t's features with the outputs "
                      "of other positions: transpose(1, 2) to (B, T, H, Dh), then reshape."),
            Diagnosis(lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]),
                      "the features come out interleaved, in (Dh, H) order: head h's outputs should be the contiguous "
                      "block h*Dh to (h+1)*Dh - 1, so flatten (H, Dh) with H first."),
        ],
    )


# ---------- repeat_kv: (B, Hkv, T, Dh) -> (B, Hkv * n_rep, T, Dh), kv head g serves a consecutive group ----------

def _repeat_reference(x, n_rep):
    copies = [x[:, g:g + 1] for g in range(x.shape[1]) for _ in range(n_rep)]  # Hkv * n_rep slices (B, 1, T, Dh)
    return torch.cat(copies, dim=1)  # -> (B, Hkv * n_rep, T, Dh)


def _repeat_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(62)
    cases = []
    for B, Hkv, T, Dh, n_rep in [(2, 3, 5, 4, 6), (3, 2, 7, 5, 4), (1, 4, 6, 3, 2), (2, 1, 9, 4, 5), (3, 4, 2, 5, 1)]:
        x = torch.randn(B, Hkv, T, Dh, generator=gen)
        what = "multi-query: one kv head" if Hkv == 1 else ("n_rep = 1: nothing to repeat" if n_rep == 1 else "grouped-query")
        cases.append(Case((x, n_rep), f"x (B={B}, Hkv={Hkv}, T={T}, Dh={Dh}), n_rep={n_rep} ({what})"))
    return cases


def _tiled(x, n_rep):
    return x.repeat(1, n_rep, 1, 1)


def repeat_kv(fn) -> None:
    """fn(x (B, Hkv, T, Dh), n_rep) -> (B, Hkv * n_rep, T, Dh): kv head g serves heads g*n_rep .. g*n_rep + n_rep - 1."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _run(
        "repeat_kv", fn, _repeat_reference, _repeat_cases(), arg_names=("x",),
        hint=("every kv head must appear n_rep times in a row: heads g, g, ..., g, then g + 1, ... "
              "Insert a new axis right after the head axis, expand it to n_rep, and flatten the two."),
        wrong_shapes=lambda x, n_rep: [
            (tuple(x.shape), "that is the input's shape: each of the Hkv heads should appear n_rep times, "
                             "giving Hkv * n_rep heads."),
            ((x.shape[0], x.shape[1], n_rep, x.shape[2], x.shape[3]),
             "that is (B, Hkv, n_rep, T, Dh): flatten the kv-head and copy axes into one, Hkv * n_rep."),
        ],
        diagnoses=[
            Diagnosis(_tiled, "you tiled the heads (0, 1, ..., 0, 1, ...), as .repeat or an expand before the head "
                              "axis does, so query head h used kv head h % Hkv. Grouped-query attention shares kv head "
                              "g among the consecutive query heads g*n_rep .. g*n_rep + n_rep - 1 (head h uses h // n_rep)."),
            Diagnosis(lambda x, n_rep: x.unsqueeze(-1).expand(*x.shape, n_rep).reshape(x.shape[0], -1, x.shape[2], x.shape[3]),
                      "you repeated along the feature axis (each number n_rep times) and reshaped, which mixes "
                      "positions and features: repeat whole heads, along the head axis."),
            Diagnosis(lambda x, n_rep: x.unsqueeze(3).expand(x.shape[0], x.shape[1], x.shape[2], n_rep, x.shape[3])
                      .reshape(x.shape[0], -1, x.shape[2], x.shape[3]),
                      "you repeated along the token axis and reshaped, which mixes positions: "
                      "the new axis belongs right after the head axis."),
        ],
    )
