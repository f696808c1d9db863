"""The exercise-checker framework.

A checker runs the learner's function and a trusted reference on fixed-seed inputs of several
shapes and magnitudes (tiny values expose a misplaced eps, large ones an overflow), and compares
outputs, and optionally gradients. It prints one success line, or raises `CheckFailed` with what
differs (the input, the shapes, the worst error) and a hint, never the solution. When the
learner's output matches a known mistake (a "diagnosis"), the hint names that mistake.

A stub's `NotImplementedError` passes through untouched: that is the error the committed notebook
shows under each unsolved exercise. Every checker frame sets `__tracebackhide__`, so IPython (and
pytest) show the learner their own code in a traceback, never the reference it is compared with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["CheckFailed", "Case", "Diagnosis", "check_function", "call_learner", "compare", "compare_grads", "fail", "passed"]


class CheckFailed(AssertionError):
    """The learner's answer is wrong; the message says how, with a hint."""


@dataclass
class Case:
    """One set of inputs. `label` describes it to the learner, e.g. "x (2, 5, 16), values ~1e-3"."""

    args: tuple
    label: str
    kwargs: dict = field(default_factory=dict)


@dataclass
class Diagnosis:
    """A known mistake: if the learner's output matches `wrong(*args, **kwargs)`, show `hint`."""

    wrong: Callable
    hint: str


def describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def fail(message: str, case: Case, hint: str) -> CheckFailed:
    """A CheckFailed in the house format: what is wrong, on which input, and a hint."""
    return CheckFailed(f"{message}\n  on input: {case.label}\n  Hint: {hint}")


def require_callable(fn, name: str) -> None:
    """A learner who passes `f()` (its result) or nothing instead of `f` is told so before any case runs."""
    __tracebackhide__ = True
    if not callable(fn):
        raise CheckFailed(f"pass your function itself to the checker, e.g. checks.{name}({name}); got {describe(fn)}")


def call_learner(fn: Callable, name: str, case: Case, hint: str = ""):
    """Run the learner's `fn` on one case, turning any error but NotImplementedError into advice."""
    __tracebackhide__ = True
    try:
        return fn(*case.args, **case.kwargs)
    except NotImplementedError:
        raise  # the stub: its own message says what to do
    except Exception as err:  # anything else is the learner's bug: say where, keep the traceback
        message = f"{name} raised {type(err).__name__}: {err}\n  on input: {case.label}"
        if hint:
            message += f"\n  Hint: {hint}"
        raise CheckFailed(message) from err


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach().double(), b.detach().double(), rtol=rtol, atol=atol, equal_nan=True)


def compare(
    name: str,
    got,
    want: torch.Tensor,
    case: Case,
    *,
    rtol: float,
    atol: float,
    hint: str,
    diagnoses: Sequence[Diagnosis] = (),
    what: str = "output",
) -> None:
    """Raise CheckFailed unless `got` is a tensor like `want` (type, shape, dtype, values)."""
    __tracebackhide__ = True
    where = f"\n  on input: {case.label}"
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{name} returned {describe(got)}; it should return a torch.Tensor{where}")
    if tuple(got.shape) != tuple(want.shape):
        raise CheckFailed(
            f"{name}'s {what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}{where}\n"
            f"  Hint: {hint or 'check which dimension you reduced over, and keepdim.'}"
        )
    if got.dtype != want.dtype:
        raise CheckFailed(
            f"{name}'s {what} has dtype {got.dtype}, expected {want.dtype}{where}\n"
            f"  Hint: keep the input's dtype (avoid creating new tensors without dtype=, or casting)."
        )
    if got.device != want.device:
        raise CheckFailed(f"{name}'s {what} is on {got.device}, expected {want.device}{where}")
    if _close(got, want, rtol, atol):
        return
    diff = (got.detach().double() - want.detach().double()).abs().nan_to_num(nan=float("inf"))
    diff = diff.masked_fill(got.detach() == want.detach(), 0.0)  # equal infinities are no error (-inf - -inf = nan)
    worst = int(diff.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape)) if diff.ndim else ()
    message = (
        f"{name}'s {what} differs from the reference{where}\n"
        f"  worst absolute error {diff.max().item():.3g} at index {index}: "
        f"got {got.detach().reshape(-1)[worst].item():.6g}, expected {want.detach().reshape(-1)[worst].item():.6g}"
    )
    for diagnosis in diagnoses:
        try:
            wrong = diagnosis.wrong(*case.args, **case.kwargs)
        except Exception:
            continue
        if isinstance(wrong, torch.Tensor) and _close(got, wrong, rtol, atol):
            raise CheckFailed(message + f"\n  Hint: {diagnosis.hint}")
    raise CheckFailed(message + f"\n  Hint: {hint}")


def _float_positions(args: tuple) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.dtype.is_floating_point]


def _fresh(args: tuple, grad: bool) -> tuple:
    """Private copies of the tensor arguments, so an in-place edit cannot leak between runs."""
    floats = _float_positions(args)
    return tuple(
        (a.detach().clone().requires_grad_(grad and i in floats) if isinstance(a, torch.Tensor) else a)
        for i, a in enumerate(args)
    )


def check_function(
    name: str,
    fn: Callable,
    reference: Callable,
    cases: Sequence[Case],
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    hint: str = "",
    diagnoses: Sequence[Diagnosis] = (),
    grad: bool = False,
    arg_names: Sequence[str] = (),
    screen: Callable | None = None,
) -> None:
    """Compare `fn` with `reference` on every case (and their gradients if `grad`); print success.

    `screen(got, want, case)`, if given, sees each output before the comparison: it raises `fail(...)`
    for a mistake it can name better than a generic mismatch (a known wrong shape, a wrong dtype), and
    returns the output to compare (possibly converted, e.g. an acceptable float64 to float32).
    """
    __tracebackhide__ = True
    require_callable(fn, name)
    for case in cases:
        ref_args, learner_args = _fresh(case.args, grad), _fresh(case.args, grad)
        want = reference(*ref_args, **case.kwargs)
        got = call_learner(fn, name, Case(learner_args, case.label, case.kwargs), hint)
        if screen is not None and isinstance(got, torch.Tensor):
            got = screen(got, want, case)
        compare(name, got, want, case, rtol=rtol, atol=atol, hint=hint, diagnoses=diagnoses)
        if grad:
            compare_grads(name, got, want, learner_args, ref_args, case, rtol, atol, arg_names)
    passed(name, len(cases), grad)


def compare_grads(name, got, want, learner_args, ref_args, case, rtol, atol, arg_names) -> None:
    __tracebackhide__ = True
    if got.grad_fn is None:
        raise CheckFailed(
            f"{name}'s output is not connected to its inputs in autograd, so nothing could be trained through it"
            f"\n  on input: {case.label}\n  Hint: stay with torch operations "
            "(no .item(), .numpy(), .detach() or torch.tensor(...) on intermediate results)."
        )
    cotangent = torch.randn(want.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    positions = _float_positions(ref_args)
    got_grads = torch.autograd.grad(
        got, [learner_args[i] for i in positions], cotangent.to(got.dtype), allow_unused=True
    )
    want_grads = torch.autograd.grad(
        want, [ref_args[i] for i in positions], cotangent.to(want.dtype), allow_unused=True
    )
    for i, g, w in zip(positions, got_grads, want_grads):
        label = arg_names[i] if i < len(arg_names) else f"argument {i}"
        if w is None:
            continue
        if g is None:
            raise CheckFailed(f"{name}'s output does not depend on {label}, but it should\n  on input: {case.label}")
        compare(
            name, g, w, case, rtol=rtol, atol=atol, what=f"gradient with respect to {label}",
            hint="the forward values match, so look for an operation that breaks differentiation.",
        )


def passed(name: str, n_cases: int, grad: bool = False) -> None:
    extra = " and gradients" if grad else ""
    print(f"✅ {name}: correct on all {n_cases} test inputs (values{extra}). Well done!")
