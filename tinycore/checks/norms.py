"""Checkers for chapters 2 and 3 (LayerNorm, BatchNorm axes, RMSNorm, partial RMSNorm)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import norms
from .core import Case, CheckFailed, Diagnosis, call_learner, check_function, compare, describe, passed

__all__ = ["layer_norm", "batch_norm", "layer_norm_backward", "rms_norm", "partial_rms_norm", "rms_norm_module"]

# (shape, scale, offset): 1e-3 makes eps matter, 1e3 punishes overflow, an offset punishes skipped centring
_SIZES = [((4, 8), 1.0, 0.0), ((2, 5, 16), 1e-3, 0.0), ((3, 2, 7, 32), 1e3, 0.0), ((6, 12), 1.0, 5.0)]


def _x(gen, shape, scale, offset, dtype=torch.float32):
    return ((torch.randn(shape, generator=gen) + offset) * scale).to(dtype)


def _label(shape, scale, offset, extra=""):
    mean = f", mean ~{offset * scale:g}" if offset else ""
    return f"x {tuple(shape)} with values ~{scale:g}{mean}{extra}"


def _affine_cases(seed: int, extra_kwargs: dict | None = None) -> list[Case]:
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for shape, scale, offset in _SIZES:
        d = shape[-1]
        args = (_x(gen, shape, scale, offset), 1 + 0.5 * torch.randn(d, generator=gen), 0.5 * torch.randn(d, generator=gen))
        cases.append(Case(args, _label(shape, scale, offset, ", random weight and bias"), dict(extra_kwargs or {})))
    return cases


def _ln(x, w=None, b=None, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], w, b, eps)


def layer_norm(fn) -> None:
    """fn(x (..., D), weight (D,), bias (D,), eps=1e-5) -> (..., D), against F.layer_norm."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    check_function(
        "layer_norm", fn, _ln, _affine_cases(20), grad=True, arg_names=("x", "weight", "bias"),
        hint="normalise each row over its last axis: subtract the mean, divide by sqrt(variance + eps), then scale and shift.",
        diagnoses=[
            Diagnosis(
                lambda x, w, b, eps=1e-5: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + eps).sqrt() * w + b,
                "you used the unbiased variance (dividing by D - 1); LayerNorm divides by D.",
            ),
            Diagnosis(
                lambda x, w, b, eps=1e-5: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False).sqrt() + eps) * w + b,
                "eps is outside the square root; it belongs inside, next to the variance.",
            ),
            Diagnosis(lambda x, w, b, eps=1e-5: _ln(x, None, None, eps), "you forgot to apply weight and bias."),
            Diagnosis(
                lambda x, w, b, eps=1e-5: F.layer_norm(x.transpose(0, -1), x.shape[:1], None, None, eps).transpose(0, -1) * w + b,
                "you normalised over the first (batch) axis; LayerNorm normalises over the last one.",
            ),
        ],
    )


def _bn(x, eps=1e-5):
    d = x.shape[-1]
    return F.batch_norm(x.reshape(-1, d), None, None, training=True, eps=eps).reshape(x.shape)


def batch_norm(fn) -> None:
    """fn(x (B, T, D), eps=1e-5) -> (B, T, D): training-mode BatchNorm, no affine, stats over B and T."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(21)
    cases = [Case((_x(gen, s, sc, off),), _label(s, sc, off)) for s, sc, off in
             [((4, 3, 8), 1.0, 0.0), ((2, 6, 5), 1e-3, 0.0), ((8, 1, 3), 1.0, 3.0)]]
    check_function(
        "batch_norm", fn, _bn, cases, grad=True, arg_names=("x",),
        hint="BatchNorm keeps one mean and one (biased) variance per feature, computed over every batch element and position.",
        diagnoses=[
            Diagnosis(lambda x, eps=1e-5: _ln(x, eps=eps), "you normalised over features (that is LayerNorm); BatchNorm normalises each feature over B and T."),
            Diagnosis(
                lambda x, eps=1e-5: (x - x.mean(0, keepdim=True)) / (x.var(0, keepdim=True, unbiased=False) + eps).sqrt(),
                "you reduced over the batch axis only; a sequence model's BatchNorm pools over B and T together.",
            ),
            Diagnosis(
                lambda x, eps=1e-5: (x - x.mean((0, 1), keepdim=True)) / (x.var((0, 1), keepdim=True) + eps).sqrt(),
                "you used the unbiased variance; training-mode BatchNorm normalises with the biased one.",
            ),
        ],
    )


def _ln_backward(x, grad_out, eps=1e-5):
    x = x.detach().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(_ln(x, eps=eps), x, grad_out)
    return grad_x


def layer_norm_backward(fn) -> None:
    """fn(x (..., D), grad_out (..., D), eps=1e-5) -> grad_x (..., D) for LayerNorm without affine."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(22)
    cases = [
        Case((_x(gen, s, sc, off), torch.randn(s, generator=gen)), _label(s, sc, off, ", grad_out ~1"))
        for s, sc, off in [((4, 8), 1.0, 0.0), ((2, 3, 16), 1e-2, 0.0), ((5, 6), 1.0, 2.0)]
    ]

    def xhat(x, eps):
        return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt()

    def inv_std(x, eps):
        return (x.var(-1, keepdim=True, unbiased=False) + eps).rsqrt()

    check_function(
        "layer_norm_backward", fn, _ln_backward, cases, atol=1e-4,
        hint="the mean and the variance both depend on every x_j, so each contributes a term: three terms in all.",
        diagnoses=[
            Diagnosis(lambda x, g, eps=1e-5: g * inv_std(x, eps), "you treated the mean and the variance as constants."),
            Diagnosis(
                lambda x, g, eps=1e-5: (g - g.mean(-1, keepdim=True)) * inv_std(x, eps),
                "the mean's term is right, but you treated the variance as a constant.",
            ),
            Diagnosis(
                lambda x, g, eps=1e-5: (g - xhat(x, eps) * (g * xhat(x, eps)).mean(-1, keepdim=True)) * inv_std(x, eps),
                "the variance's term is right, but you left out the mean's.",
            ),
        ],
    )


def _rms(x, w=None, eps=1e-5):
    return F.rms_norm(x, x.shape[-1:], w, eps)


def rms_norm(fn) -> None:
    """fn(x (..., D), weight (D,), eps=1e-5) -> (..., D), against F.rms_norm, float16 included."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(30)
    cases = [Case(c.args[:2], c.label.replace(" and bias", "")) for c in _affine_cases(31)]
    x16 = _x(gen, (3, 16), 1e3, 0.0, torch.float16)
    cases.append(Case((x16, torch.ones(16, dtype=torch.float16)), "x (3, 16) float16 with values ~1e3, weight of ones"))
    check_function(
        "rms_norm", fn, _rms, cases, grad=True, arg_names=("x", "weight"), rtol=2e-3, atol=1e-3,
        hint=(
            "divide x by sqrt(mean(x^2) + eps) over the last axis, multiply by weight; "
            "compute in float32 and return the input's dtype (float16 squares overflow past 65504)."
        ),
        diagnoses=[
            Diagnosis(
                lambda x, w, eps=1e-5: x / ((x.float().pow(2).mean(-1, keepdim=True)).sqrt() + eps).to(x.dtype) * w,
                "eps is outside the square root; it belongs inside, next to the mean square.",
            ),
            Diagnosis(lambda x, w, eps=1e-5: _ln(x.float(), eps=eps).to(x.dtype) * w, "you subtracted the mean: RMSNorm re-scales but does not re-centre."),
            Diagnosis(lambda x, w, eps=1e-5: x / x.float().norm(dim=-1, keepdim=True).to(x.dtype) * w, "you divided by the norm, not the root *mean* square (missing a factor sqrt(D))."),
            Diagnosis(
                lambda x, w, eps=1e-5: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w,
                "in float16 x**2 overflowed to inf: do the arithmetic in float32 and cast back.",
            ),
        ],
    )


def _partial_reference(x, w, p, eps=1e-5):
    return norms.rms_norm(x, w, eps, p)


def partial_rms_norm(fn) -> None:
    """fn(x (..., D), weight (D,), p, eps=1e-5) -> (..., D): RMS from the first floor(p * D) features."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(32)
    cases = []
    for shape, p in [((4, 16), 0.25), ((2, 3, 10), 0.35), ((5, 33), 0.5), ((3, 8), 1.0)]:
        k = int(p * shape[-1])
        args = (torch.randn(shape, generator=gen), 1 + 0.5 * torch.randn(shape[-1], generator=gen), p)
        cases.append(Case(args, f"x {shape}, p = {p} (so k = {k} of D = {shape[-1]})"))

    def using(features):  # a wrong answer that takes its mean square over features(x, k)
        def wrong(x, w, p, eps=1e-5):
            used = features(x, int(p * x.shape[-1]), p)
            return x * torch.rsqrt(used.pow(2).mean(-1, keepdim=True) + eps) * w
        return wrong

    check_function(
        "partial_rms_norm", fn, _partial_reference, cases, grad=True, arg_names=("x", "weight"),
        hint="k = floor(p * D) leading features give the mean square; every feature is then divided by that RMS.",
        diagnoses=[
            Diagnosis(using(lambda x, k, p: x), "you used all D features; the RMS should come from the first k only."),
            Diagnosis(using(lambda x, k, p: x[..., : round(p * x.shape[-1])]), "you rounded p * D; the paper takes the floor."),
            Diagnosis(using(lambda x, k, p: x[..., : math.ceil(p * x.shape[-1])]), "you rounded p * D up; the paper takes the floor."),
            Diagnosis(using(lambda x, k, p: x[..., -k:]), "you took the last k features; the paper uses the first k."),
        ],
    )


def rms_norm_module(cls) -> None:
    """cls(d_model, eps=1e-5) -> an nn.Module with a `weight` (D,) of ones, equal to nn.RMSNorm."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "rms_norm_module"
    d, eps = 12, 1e-6
    label = f"{cls.__name__ if isinstance(cls, type) else cls}({d}, eps={eps})"
    built = call_learner(cls, name, Case((d,), label, {"eps": eps}))
    if not isinstance(built, nn.Module):
        raise CheckFailed(f"{label} gave {describe(built)}; it should be a torch.nn.Module (subclass nn.Module)")
    params = dict(built.named_parameters())
    if set(params) != {"weight"}:
        raise CheckFailed(
            f"{label} has parameters {sorted(params)}; it should have exactly one, named 'weight'\n"
            "  Hint: the name matters so that state_dicts move between implementations; wrap the tensor in nn.Parameter."
        )
    if tuple(params["weight"].shape) != (d,) or not torch.equal(params["weight"].detach(), torch.ones(d)):
        raise CheckFailed(f"{label}.weight should start as torch.ones({d}); got {describe(params['weight'])}")
    oracle = nn.RMSNorm(d, eps=eps)
    gen = torch.Generator().manual_seed(33)
    with torch.no_grad():
        oracle.weight.copy_(1 + 0.5 * torch.randn(d, generator=gen))
    built.load_state_dict(oracle.state_dict())
    for shape, scale in [((4, d), 1.0), ((2, 3, d), 1e-3), ((5, d), 1e3)]:
        x = torch.randn(shape, generator=gen) * scale
        case = Case((x,), f"x {shape} with values ~{scale:g}, weights loaded from nn.RMSNorm")
        got = call_learner(built, name, case)
        compare(name, got, oracle(x), case, rtol=1e-4, atol=1e-5,
                hint="forward should return x / sqrt(mean(x^2) + self.eps) * self.weight, over the last axis.")
    bad = torch.randn(2, d + 1)
    try:
        built(bad)
    except ValueError as err:
        if str(d) not in str(err):
            raise CheckFailed(f"the ValueError for a wrong last dimension should name the expected size {d}; it says: {err}") from None
    except Exception as err:
        raise CheckFailed(
            f"for x of shape {tuple(bad.shape)} your module raised {type(err).__name__}: {err}\n"
            f"  Hint: check x.shape[-1] yourself and raise a ValueError that names the expected size {d}."
        ) from None
    else:
        raise CheckFailed(
            f"your module accepted x of shape {tuple(bad.shape)} although it was built for d_model={d}\n"
            "  Hint: check x.shape[-1] in forward and raise a ValueError that names the expected size."
        )
    passed(name, 4)
