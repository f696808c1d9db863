"""Checkers for chapter 4 (GELU, the position-wise feed-forward network, SwiGLU).

The references are PyTorch's own operations: `F.gelu` (exact, erf-based), `F.silu` and `F.linear`
(which multiplies by the transposed weight, as `nn.Linear` stores weights (d_out, d_in)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .core import Case, Diagnosis, check_function

__all__ = ["gelu", "feed_forward", "swiglu"]


def _gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def gelu(fn) -> None:
    """fn(x (...)) -> (...): the exact GELU x * Phi(x), against F.gelu."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(40)
    cases = [
        # a dense grid: the tanh approximation is off by up to 4.7e-4 near |x| = 2.7
        Case((torch.linspace(-6, 6, 241, dtype=torch.float64),), "x = linspace(-6, 6, 241), float64"),
        Case((torch.randn(3, 5, generator=gen),), "x (3, 5) with values ~1"),
        Case((4 * torch.randn(2, 4, 6, generator=gen, dtype=torch.float64),), "x (2, 4, 6) float64 with values ~4"),
        Case((1e-3 * torch.randn(7, generator=gen),), "x (7,) with values ~1e-3"),
    ]
    check_function(
        "gelu", fn, F.gelu, cases, grad=True, arg_names=("x",), rtol=1e-5, atol=1e-6,
        hint="GELU(x) = x * Phi(x), where Phi(x) = (1 + erf(x / sqrt(2))) / 2 is the standard normal CDF.",
        diagnoses=[
            Diagnosis(_gelu_tanh, "that is the tanh approximation (as in GPT-2); this exercise wants the exact, erf-based GELU."),
            Diagnosis(F.relu, "that is ReLU; GELU weights x by Phi(x) instead of cutting it off at zero."),
            Diagnosis(F.silu, "that is x * sigmoid(x) (SiLU); GELU uses the normal CDF Phi(x), not the sigmoid."),
            Diagnosis(lambda x: x * torch.sigmoid(1.702 * x), "that is the sigmoid approximation x * sigmoid(1.702 x); use erf for the exact GELU."),
            Diagnosis(lambda x: 0.5 * x * (1 + torch.erf(x)), "Phi(x) needs erf(x / sqrt(2)), not erf(x)."),
            Diagnosis(lambda x: x * (1 + torch.erf(x / math.sqrt(2))), "you forgot the factor 1/2: Phi(x) = (1 + erf(x / sqrt(2))) / 2."),
        ],
    )


def _ffn(x, w1, w2, act=F.gelu):
    return F.linear(act(F.linear(x, w1)), w2)


def _ffn_cases(seed: int, gate: bool) -> list[Case]:
    """x, w1 (F, D), [w2 (D, F), w3 (F, D)]. The first case is square (F == D), so transposed weights
    still run and the mistake is named; the others have F != D and leading dimensions of every size."""
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for shape, f, scale, dtype in [
        ((3, 8), 8, 1.0, torch.float64),
        ((2, 5, 6), 16, 1.0, torch.float32),
        ((4, 12), 20, 3.0, torch.float64),
        ((2, 3, 5, 4), 9, 0.1, torch.float32),
    ]:
        d = shape[-1]
        x = scale * torch.randn(shape, generator=gen, dtype=dtype)
        w1 = torch.randn(f, d, generator=gen, dtype=dtype) / math.sqrt(d)
        w2 = torch.randn(d, f, generator=gen, dtype=dtype) / math.sqrt(f)
        args = (x, w1, w2)
        names = f"w1 ({f}, {d}), w2 ({d}, {f})"
        if gate:
            args += (torch.randn(f, d, generator=gen, dtype=dtype) / math.sqrt(d),)
            names += f", w3 ({f}, {d})"
        kind = "" if dtype == torch.float32 else " float64"
        cases.append(Case(args, f"x {shape}{kind} with values ~{scale:g}, {names}"))
    return cases


def feed_forward(fn) -> None:
    """fn(x (..., D), w1 (F, D), w2 (D, F)) -> (..., D): w2(gelu(w1 x)) with the exact GELU."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    check_function(
        "feed_forward", fn, _ffn, _ffn_cases(41, gate=False), grad=True, arg_names=("x", "w1", "w2"),
        rtol=1e-5, atol=1e-5,
        hint=(
            "project up with w1, apply the exact GELU, project down with w2; the weights are stored "
            "(d_out, d_in) as in nn.Linear, so a vector x is multiplied by the transpose: x @ w1.T."
        ),
        diagnoses=[
            Diagnosis(lambda x, w1, w2: F.gelu(x @ w1) @ w2, "you multiplied by w1 and w2 without transposing: they are stored (d_out, d_in), so use x @ w1.T."),
            Diagnosis(lambda x, w1, w2: _ffn(x, w1, w2, F.relu), "that is ReLU (the original transformer's choice); this FFN uses the exact GELU."),
            Diagnosis(lambda x, w1, w2: _ffn(x, w1, w2, _gelu_tanh), "that is the tanh approximation of GELU; use the exact, erf-based one."),
            Diagnosis(lambda x, w1, w2: _ffn(x, w1, w2, lambda h: h), "there is no activation between the two projections: without it the FFN is a single linear map."),
            Diagnosis(lambda x, w1, w2: _ffn(x, w1, w2, F.silu), "that is SiLU; this FFN uses GELU (SiLU belongs to SwiGLU's gate)."),
            Diagnosis(lambda x, w1, w2: F.gelu(_ffn(x, w1, w2, lambda h: h)), "the GELU goes between the projections (on the F hidden units), not after w2."),
        ],
    )


def _swiglu(x, w1, w2, w3):
    return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)


def swiglu(fn) -> None:
    """fn(x (..., D), w1 (F, D), w2 (D, F), w3 (F, D)) -> (..., D): w2(silu(w1 x) * w3 x)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    check_function(
        "swiglu", fn, _swiglu, _ffn_cases(42, gate=True), grad=True, arg_names=("x", "w1", "w2", "w3"),
        rtol=1e-5, atol=1e-5,
        hint=(
            "two up projections, w1 (the gate) and w3 (up); SiLU on the gate only; multiply the two "
            "elementwise; project down with w2. Weights are (d_out, d_in): x @ w1.T."
        ),
        diagnoses=[
            Diagnosis(lambda x, w1, w2, w3: _swiglu(x, w3, w2, w1), "SiLU went on the up projection w3; it belongs on the gate, w1."),
            Diagnosis(
                lambda x, w1, w2, w3: F.linear(torch.sigmoid(F.linear(x, w1)) * F.linear(x, w3), w2),
                "that is sigmoid(w1 x) (the original GLU); SwiGLU's gate is SiLU, x * sigmoid(x).",
            ),
            Diagnosis(lambda x, w1, w2, w3: F.linear(F.linear(x, w3), w2), "the gate is missing: multiply w3 x by silu(w1 x) before projecting down."),
            Diagnosis(lambda x, w1, w2, w3: F.linear(F.silu(F.linear(x, w1)), w2), "the up projection w3 x is missing: the gate multiplies it."),
            Diagnosis(
                lambda x, w1, w2, w3: F.linear(F.linear(x, w1) * F.linear(x, w3), w2),
                "there is no SiLU: without it the gate is linear (a bilinear layer).",
            ),
            Diagnosis(
                lambda x, w1, w2, w3: F.linear(F.gelu(F.linear(x, w1)) * F.linear(x, w3), w2),
                "that is GELU on the gate (GEGLU); SwiGLU uses SiLU.",
            ),
            Diagnosis(
                lambda x, w1, w2, w3: (F.silu(x @ w1) * (x @ w3)) @ w2,
                "you multiplied by the weights without transposing: they are stored (d_out, d_in), so use x @ w1.T.",
            ),
            Diagnosis(
                lambda x, w1, w2, w3: F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w2), w3),
                "w2 and w3 are swapped: w3 is the up projection (F, D) and w2 the down projection (D, F).",
            ),
        ],
    )
