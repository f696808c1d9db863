"""Checkers for chapter 8 (rotary position embeddings: frequencies, the rotation, the half-split layout)."""

from __future__ import annotations

import torch

from .core import Case, Diagnosis, check_function, fail

__all__ = ["rope_frequencies", "apply_rope", "rope_to_half_split"]


def _frequencies64(d_k: int, theta: float) -> torch.Tensor:
    """omega_i = theta^(-2i/d_k), i = 0 .. d_k/2 - 1, from Python floats (float64)."""
    return torch.tensor([theta ** (-2 * i / d_k) for i in range(d_k // 2)], dtype=torch.float64)


# ---------- rope_frequencies ----------

def rope_frequencies(fn) -> None:
    """fn(d_k, theta) -> (d_k/2,) float32 tensor of theta^(-2i/d_k)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "rope_frequencies"
    hint = "pair i (features 2i and 2i+1) turns at theta ** (-2 * i / d_k) radians per position, i = 0 .. d_k/2 - 1."
    diagnoses = [
        Diagnosis(
            lambda d, th: th ** (-torch.arange(d // 2, dtype=torch.float64) / d),
            "your exponent is -i/d_k: pair i starts at feature 2i, so the exponent is -2i/d_k "
            "(your frequencies fall only to theta^(-1/2)).",
        ),
        Diagnosis(
            lambda d, th: th ** (-2 * torch.arange(d // 2, dtype=torch.float64) / (d - 2)),
            "your last frequency is exactly 1/theta: the exponent is -2i/d_k, which stops at -(d_k - 2)/d_k, "
            "just short of -1 (did you use linspace, or divide by d_k - 2?).",
        ),
        Diagnosis(
            lambda d, th: th ** (2 * torch.arange(d // 2, dtype=torch.float64) / d),
            "your frequencies grow with i: the exponent must be negative, so that they fall from 1 towards 1/theta.",
        ),
        Diagnosis(
            lambda d, th: th ** (-2 * torch.arange(1, d // 2 + 1, dtype=torch.float64) / d),
            "your pairs are counted from 1: the first pair (i = 0) turns at frequency 1.",
        ),
    ]

    def screen(got, want, case):
        __tracebackhide__ = True
        if not (got.dtype.is_floating_point or got.dtype.is_complex):
            raise fail(
                f"{name} returned a tensor of dtype {got.dtype}", case,
                "frequencies are fractions: compute in floating point "
                "(e.g. torch.arange(..., dtype=torch.float32), and / rather than //).",
            )
        return got.float() if got.dtype == torch.float64 else got  # float64 is fine too: the formula is what is checked

    cases = [Case((d_k, theta), f"d_k = {d_k}, theta = {theta:g}")
             for d_k, theta in [(8, 10000.0), (6, 100.0), (64, 10000.0), (18, 500000.0)]]
    check_function(name, fn, lambda d_k, theta: _frequencies64(d_k, theta).float(), cases, rtol=1e-5, atol=1e-10,
                   hint=hint, diagnoses=diagnoses, screen=screen)


# ---------- apply_rope ----------

def _rope_reference(x: torch.Tensor, token_positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Each pair (x[2i], x[2i+1]) as the complex number x[2i] + 1j x[2i+1], times e^(1j * position * omega_i)."""
    d_k = x.shape[-1]
    angles = token_positions.double()[:, None] * _frequencies64(d_k, theta)  # (T, 1) * (d_k/2,) -> (T, d_k/2)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d_k // 2, 2))  # (..., T, d_k) -> (..., T, d_k/2)
    turned = pairs * torch.polar(torch.ones_like(angles), angles)  # (..., T, d_k/2) complex
    return torch.view_as_real(turned).flatten(-2).to(x.dtype)  # (..., T, d_k/2, 2) -> (..., T, d_k)


def _half_exponent(d_k: int, theta: float) -> torch.Tensor:
    return theta ** (-torch.arange(d_k // 2, dtype=torch.float64) / d_k)  # theta^(-i/d_k): a known mistake


def _rope_wrong(x, token_positions, theta, *, sign=1.0, layout="interleaved", frequencies=None, positions=None):
    """The rotation with one known mistake, for diagnoses."""
    d_k, half = x.shape[-1], x.shape[-1] // 2
    pos = token_positions if positions is None else positions(token_positions)
    freqs = _frequencies64(d_k, theta) if frequencies is None else frequencies(d_k, theta)
    angles = sign * pos.double()[:, None] * freqs  # (T, d_k/2)
    cos, sin = angles.cos(), angles.sin()
    h = x.double()
    if layout == "interleaved":
        a, b = h[..., 0::2], h[..., 1::2]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).to(x.dtype)
    a, b = h[..., :half], h[..., half:]  # the half-split (rotate_half) pairing
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1).to(x.dtype)


def apply_rope(fn) -> None:
    """fn(x (..., T, d_k), token_positions (T,), theta) -> (..., T, d_k): RoFormer's interleaved pairs."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(80)
    cases = []
    for shape, positions, theta, dtype, note in [
        ((5, 8), torch.arange(5), 10000.0, torch.float32, "positions 0..4"),
        ((2, 7, 12), torch.tensor([3, 0, 11, 4, 4, 9, 20]), 100.0, torch.float32, "positions [3, 0, 11, 4, 4, 9, 20]"),
        ((3, 2, 6, 16), torch.arange(100, 106), 10000.0, torch.float32, "positions 100..105 (as after a KV cache)"),
        ((4, 9, 10), torch.randint(0, 50, (9,), generator=gen), 500.0, torch.float64, "positions below 50, float64"),
    ]:
        x = (3 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
        cases.append(Case((x, positions, theta), f"x {shape}, theta = {theta:g}, {note}"))
    check_function(
        "apply_rope", fn, _rope_reference, cases, grad=True, arg_names=("x",), rtol=1e-4, atol=1e-4,
        hint=(
            "rotate each neighbouring pair (x[..., 2i], x[..., 2i+1]) by the angle position * theta^(-2i/d_k): "
            "(a, b) -> (a cos - b sin, a sin + b cos); one angle per (position, pair), shape (T, d_k/2), "
            "broadcast over the leading dimensions; return x's shape and dtype."
        ),
        diagnoses=[
            Diagnosis(
                lambda x, p, th: _rope_wrong(x, p, th, layout="half"),
                "you paired x[i] with x[i + d_k/2] (the half-split, rotate_half layout of GPT-NeoX and Hugging Face "
                "LLaMA); this exercise pairs neighbours, x[2i] with x[2i+1], as the RoFormer paper does.",
            ),
            Diagnosis(
                lambda x, p, th: _rope_wrong(x, p, th, sign=-1.0),
                "you rotated the wrong way (clockwise): the sign of sin is flipped. "
                "The pair (a, b) becomes (a cos - b sin, a sin + b cos).",
            ),
            Diagnosis(
                lambda x, p, th: x,
                "your output equals the input: nothing was rotated (are the positions, or the angles, all zero?).",
            ),
            Diagnosis(
                lambda x, p, th: _rope_wrong(x, p, th, positions=lambda p: torch.arange(len(p))),
                "you used positions 0..T-1: rotate by the token_positions you are given.",
            ),
            Diagnosis(
                lambda x, p, th: _rope_wrong(x, p, th, frequencies=_half_exponent),
                "the rotation is right but the frequencies are not: pair i turns at theta^(-2i/d_k), "
                "not theta^(-i/d_k).",
            ),
        ],
    )


# ---------- rope_to_half_split ----------

def _head_permutation(d_head: int) -> list[int]:
    return list(range(0, d_head, 2)) + list(range(1, d_head, 2))  # the even features, then the odd ones


def _permute_rows(weight: torch.Tensor, num_heads: int, perm_of_head) -> torch.Tensor:
    """Rows of head h are rows h*Dh .. h*Dh + Dh - 1; reorder each head's block by perm_of_head(Dh)."""
    d_head = weight.shape[0] // num_heads
    order = [h * d_head + j for h in range(num_heads) for j in perm_of_head(d_head)]
    return weight[order]


def _inverse(perm: list[int]) -> list[int]:
    inverse = [0] * len(perm)
    for new, old in enumerate(perm):
        inverse[old] = new
    return inverse


def rope_to_half_split(fn) -> None:
    """fn(weight (H*Dh, D_in), num_heads) -> (H*Dh, D_in): each head's rows reordered evens-then-odds."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(81)
    cases = []
    for heads, d_head, d_in, what in [
        (2, 6, 12, "q_proj"), (3, 8, 24, "q_proj"), (4, 10, 40, "q_proj"),
        (2, 8, 48, "k_proj with 2 key/value heads (GQA)"),
    ]:
        weight = torch.randn(heads * d_head, d_in, generator=gen)
        label = f"{what} weight ({heads * d_head}, {d_in}), num_heads = {heads} (Dh = {d_head})"
        cases.append(Case((weight, heads), label))
    check_function(
        "rope_to_half_split", fn, lambda w, h: _permute_rows(w, h, _head_permutation), cases,
        grad=True, arg_names=("weight",), rtol=0, atol=1e-6,
        hint=(
            "rows h*Dh .. (h+1)*Dh - 1 produce head h's query (or key) features; within each head, new row j must be "
            "old row perm[j], with perm = the even offsets 0, 2, 4, ... then the odd ones 1, 3, 5, ..."
        ),
        diagnoses=[
            Diagnosis(lambda w, h: w, "you returned the weight unchanged: each head's rows must be reordered."),
            Diagnosis(
                lambda w, h: _permute_rows(w, 1, _head_permutation),
                "you reordered all the rows at once (evens of the whole matrix, then odds); "
                "each head has its own Dh rows and must be reordered separately.",
            ),
            Diagnosis(
                lambda w, h: _permute_rows(w, h, lambda d: _inverse(_head_permutation(d))),
                "you applied the inverse permutation: new row j must be old row perm[j] (new = old[perm]), "
                "not old row j moved to position perm[j].",
            ),
            Diagnosis(
                lambda w, h: _permute_rows(w, h, lambda d: list(range(1, d, 2)) + list(range(0, d, 2))),
                "you put the odd rows first: the even offsets (the first member of each pair) come first.",
            ),
            Diagnosis(
                lambda w, h: _permute_rows(w.T, h, _head_permutation).T,
                "you reordered the columns: the rows of a (d_out, d_in) weight are the q/k features, so reorder rows.",
            ),
        ],
    )
