"""Checkers for chapter 5 (a numerically stable softmax, the causal mask, masked attention)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .core import Case, Diagnosis, check_function, fail

__all__ = ["stable_softmax", "causal_mask", "masked_attention"]


# ---------- stable_softmax ----------

def _softmax_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(50)
    cases = []
    # (shape, dim, scale, offset): ~100 overflows a naive exp() in float32, -1000 underflows it to 0 / 0
    for shape, dim, scale, offset in [
        ((4, 9), 1, 1.0, 0.0), ((3, 5, 7), 1, 3.0, 0.0), ((6, 2), 0, 1.0, 0.0),
        ((2, 3, 11), -1, 100.0, 0.0), ((5, 8), -1, 1.0, -1000.0),
    ]:
        x = torch.randn(shape, generator=gen) * scale + offset
        where = f", all near {offset:g}" if offset else ""
        cases.append(Case((x, dim), f"x {shape}, dim={dim}, values ~{scale:g}{where}"))
    x = 2 * torch.randn(3, 10, generator=gen)
    x[torch.rand(3, 10, generator=gen) < 0.4] = float("-inf")  # masked scores, as attention makes them
    x[:, 0] = 0.5  # every row keeps at least one finite entry
    cases.append(Case((x, -1), "x (3, 10), dim=-1, values ~2 with some -inf entries (masked scores)"))
    return cases


def _other_dim(x, dim):
    """The axis a learner might use by mistake: the last one, or (when dim is the last) the first."""
    return 0 if dim in (-1, x.ndim - 1) else -1


def stable_softmax(fn) -> None:
    """fn(x (...), dim) -> (...): softmax along `dim` that neither overflows nor underflows, against torch.softmax."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    check_function(
        "stable_softmax", fn, lambda x, dim: torch.softmax(x, dim), _softmax_cases(),
        grad=True, arg_names=("x",), rtol=1e-4, atol=1e-6,
        hint=(
            "softmax(x) = softmax(x - c) for any constant c: subtract the maximum along `dim` "
            "(keepdim=True) before exp(), then divide by the sum along the same `dim`."
        ),
        diagnoses=[
            Diagnosis(
                lambda x, dim: x.exp() / x.exp().sum(dim, keepdim=True),
                "exp() overflowed or underflowed: in float32 exp(x) is inf above x = 88.7 and 0 below about -104, "
                "and inf / inf or 0 / 0 is NaN. Subtract the maximum along `dim` before exp().",
            ),
            Diagnosis(
                lambda x, dim: torch.softmax(x, _other_dim(x, dim)),
                "you normalised along the wrong axis: take the maximum and the sum along `dim`, the argument you were given.",
            ),
            Diagnosis(
                lambda x, dim: (x - x.amax(dim, keepdim=True)).exp(),
                "your weights do not sum to one (the largest is exactly 1): divide the exponentials by their sum, not by their maximum.",
            ),
            Diagnosis(
                lambda x, dim: torch.softmax(x / x.amax(dim, keepdim=True), dim),
                "you divided x by its maximum; subtract it instead: softmax(x - c) = softmax(x), but softmax(x / c) is a different distribution.",
            ),
        ],
    )


# ---------- causal_mask ----------

def _causal_reference(t: int) -> torch.Tensor:
    """The definition, as a plain loop: query i may attend key j exactly when j <= i."""
    return torch.tensor([[j <= i for j in range(t)] for i in range(t)], dtype=torch.bool)


def causal_mask(fn) -> None:
    """fn(T) -> (T, T) bool, True where query i may attend key j (j <= i)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "causal_mask"

    def screen(got, want, case):
        __tracebackhide__ = True
        if got.dtype != torch.bool:
            raise fail(
                f"{name} returned a {got.dtype} tensor; it should return a torch.bool mask (True = may attend)", case,
                "a float mask of 1/0 or 0/-inf is a different convention (an additive bias); build the mask from a "
                "comparison, or pass dtype=torch.bool.",
            )
        return got

    check_function(
        name, fn, _causal_reference, [Case((t,), f"T = {t}") for t in (5, 8, 1, 13)], rtol=0, atol=0, screen=screen,
        hint="row i is query i, column j is key j; a token may see itself and everything before it, so True where j <= i.",
        diagnoses=[
            Diagnosis(
                lambda t: torch.ones(t, t).tril(-1).bool(),
                "off by one: the diagonal is False, so a token may not attend to itself (and the first query sees nothing). "
                "Keep the diagonal: True where j <= i.",
            ),
            Diagnosis(
                lambda t: torch.ones(t, t).triu().bool(),
                "this is the upper triangle: query i would see the keys after it, the future. Keep the lower triangle (j <= i).",
            ),
            Diagnosis(
                lambda t: torch.ones(t, t).triu(1).bool(),
                "the polarity is inverted: True means *may attend* (as in F.scaled_dot_product_attention), "
                "so the allowed past and present are True and the future is False.",
            ),
            Diagnosis(lambda t: torch.ones(t, t).bool(), "every entry is True: nothing is masked, so every token sees the future."),
        ],
    )


# ---------- masked_attention ----------

def _mask(gen, shape) -> torch.Tensor:
    """A random boolean mask whose every row allows at least one key and hides at least one."""
    mask = torch.rand(shape, generator=gen) < 0.6
    mask[..., 0], mask[..., -1] = True, False
    return mask


def _attention_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(51)
    cases = []

    def add(q_shape, tk, dv, mask, scale, mask_text):
        *lead, tq, dk = q_shape
        q = torch.randn(q_shape, generator=gen) * scale
        k = torch.randn((*lead, tk, dk), generator=gen) * scale
        v = torch.randn((*lead, tk, dv), generator=gen)
        label = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, {mask_text}, q and k ~{scale:g}"
        cases.append(Case((q, k, v, mask), label))

    add((2, 5, 8), 7, 3, _mask(gen, (5, 7)), 1.0, "random mask (5, 7)")
    lengths = torch.tensor([8, 5, 2])
    padding = (torch.arange(9)[None, :] < lengths[:, None])[:, None, None, :]  # (3, 9) -> (3, 1, 1, 9)
    add((3, 4, 6, 16), 9, 10, padding, 1.0, f"padding mask (3, 1, 1, 9) for key lengths {lengths.tolist()}")
    add((6, 12), 10, 4, _mask(gen, (6, 10)), 1.0, "random mask (6, 10), no leading dimensions")
    causal = torch.ones(4, 11, dtype=torch.bool).tril(11 - 4)  # the 4 queries are the last of 11 positions
    add((2, 3, 4, 8), 11, 5, causal, 3.0, "causal mask (4, 11) with the queries at the last 4 positions")
    return cases


def _attend(q, k, v, mask, scale, dim=-1, fill=float("-inf"), after=False):
    """Masked attention with a chosen scale and softmax axis: the reference's variants, for diagnoses."""
    scores = q @ k.transpose(-2, -1) / scale  # (..., Tq, Tk)
    if not after:
        scores = scores.masked_fill(~mask, fill)
    weights = torch.softmax(scores, dim)
    if after:
        weights = weights * mask
    return weights @ v


def _heads(q) -> int:
    """H for q of shape (B, H, Tq, Dk); other shapes have no heads to confuse."""
    if q.ndim != 4:
        raise ValueError("no head axis")
    return q.shape[1]


def masked_attention(fn) -> None:
    """fn(q (..., Tq, Dk), k (..., Tk, Dk), v (..., Tk, Dv), mask bool, True = may attend) -> (..., Tq, Dv)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    dk = lambda q: math.sqrt(q.shape[-1])  # noqa: E731  (the right scale, for the wrong answers below)
    check_function(
        "masked_attention", fn,
        lambda q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        _attention_cases(), grad=True, arg_names=("q", "k", "v", "mask"), rtol=1e-4, atol=1e-5,
        hint=(
            "compare every query with every key (a matmul with k's last two axes swapped, so any leading "
            "dimensions work), divide by sqrt(d_k) with d_k the width of q and k, give the keys the mask "
            "forbids a score of -inf, take the softmax over the keys, and average the rows of v with those weights."
        ),
        diagnoses=[
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, math.sqrt(k.shape[-2])),
                      "you divided by sqrt(Tk), the number of keys; the scale is 1/sqrt(d_k), the width of q and k (q.shape[-1])."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, 1.0),
                      "the scores are not scaled: divide q k^T by sqrt(d_k) (d_k = q.shape[-1]) before the softmax."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, math.sqrt(v.shape[-1])),
                      "you divided by the square root of v's width; the scale uses d_k, the width of q and k."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, math.sqrt(q.shape[-2])),
                      "you divided by sqrt(Tq), the number of queries; the scale uses d_k, the width of q and k."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, q.shape[-1]),
                      "you divided by d_k itself; the scale is its square root."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, math.sqrt(q.shape[-1] * _heads(q))),
                      "you divided by sqrt(H * d_k), the model width D, not the head width d_k: every score is sqrt(H) too small."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, ~m, dk(q)),
                      "the mask's polarity is inverted: True means *may attend*, so hide the keys where mask is False."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, dk(q), dim=-2),
                      "you took the softmax over the queries (dim=-2); each query's weights over the keys (dim=-1) must sum to one."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, dk(q), fill=0.0),
                      "you set the hidden scores to 0, but exp(0) = 1 still gives those keys weight: fill them with -inf."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, m, dk(q), after=True),
                      "you zeroed the weights after the softmax, so the rows no longer sum to one: mask the scores before it."),
            Diagnosis(lambda q, k, v, m: _attend(q, k, v, torch.ones_like(m), dk(q)),
                      "the output does not depend on the mask: use it to hide the keys where it is False."),
        ],
    )
