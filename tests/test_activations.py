import pytest
import torch
import torch.nn.functional as F

from tinycore import gelu, silu, softmax


def _grads(fn, x, g):
    x = x.detach().requires_grad_(True)
    out = fn(x)
    (grad,) = torch.autograd.grad(out, x, g)
    return out, grad


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 11), (2, 2, 3, 4)])
@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("ours, theirs", [
    (softmax, lambda x: torch.softmax(x, dim=-1)),
    (lambda x: softmax(x, dim=0), lambda x: torch.softmax(x, dim=0)),
    (gelu, F.gelu),
    (silu, F.silu),
])
def test_matches_torch_in_float32_forward_and_backward(shape, scale, ours, theirs, gen):
    x = torch.randn(shape, generator=gen) * scale
    g = torch.randn(shape, generator=gen)
    out, grad = _grads(ours, x, g)
    ref, ref_grad = _grads(theirs, x, g)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_softmax_survives_logits_that_overflow_exp():
    x = torch.tensor([1000.0, 999.0, -1000.0])
    assert torch.isnan(x.exp() / x.exp().sum()).any()  # the naive formula
    out = softmax(x)
    assert torch.isfinite(out).all() and out.sum().item() == pytest.approx(1.0)


def test_gelu_is_the_exact_form_not_the_tanh_approximation():
    x = torch.linspace(-4, 4, 101)
    assert (gelu(x) - F.gelu(x, approximate="tanh")).abs().max() > 1e-4
    torch.testing.assert_close(gelu(x), F.gelu(x), rtol=0, atol=1e-6)
