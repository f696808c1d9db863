"""tinycore.norms against PyTorch's own ops (forward and gradients, float64 to 1e-9), the RMSNorm
paper's original code, and the invariances that define each norm."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinycore import LayerNorm, RMSNorm, layer_norm, partial_size, rms_norm

SHAPES = [(7,), (3, 16), (2, 5, 32), (2, 3, 4, 64)]
SCALES = [1.0, 1e-3, 1e3]  # 1e-3: var ~ 1e-6 is comparable to eps, where eps placement matters


def _x(shape, scale, gen, offset=0.0):
    return ((torch.randn(shape, generator=gen, dtype=torch.float64) + offset) * scale).requires_grad_(True)


def _affine(d, gen):
    w = (1 + 0.5 * torch.randn(d, generator=gen, dtype=torch.float64)).requires_grad_(True)
    b = (0.5 * torch.randn(d, generator=gen, dtype=torch.float64)).requires_grad_(True)
    return w, b


def _assert_same_values_and_grads(out, ref, inputs, gen, atol=1e-9):
    torch.testing.assert_close(out, ref, rtol=0, atol=atol)
    g = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    for a, b in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=atol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_layer_norm_equals_torch_float64(shape, scale, gen):
    x = _x(shape, scale, gen, offset=0.5)
    w, b = _affine(shape[-1], gen)
    _assert_same_values_and_grads(layer_norm(x, w, b), F.layer_norm(x, shape[-1:], w, b, 1e-5), [x, w, b], gen)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_rms_norm_equals_torch_float64(shape, scale, gen):
    x = _x(shape, scale, gen, offset=0.5)
    w, _ = _affine(shape[-1], gen)
    _assert_same_values_and_grads(rms_norm(x, w), F.rms_norm(x, shape[-1:], w, 1e-5), [x, w], gen)


def test_modules_share_state_dicts_and_outputs_with_torch(gen):
    x = _x((2, 5, 12), 1.0, gen)
    for ours, oracle in [
        (LayerNorm(12, dtype=torch.float64), nn.LayerNorm(12, dtype=torch.float64)),
        (LayerNorm(12, bias=False, dtype=torch.float64), nn.LayerNorm(12, bias=False, dtype=torch.float64)),
        (RMSNorm(12, eps=1e-6, dtype=torch.float64), nn.RMSNorm(12, eps=1e-6, dtype=torch.float64)),
    ]:
        with torch.no_grad():
            for p in oracle.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        ours.load_state_dict(oracle.state_dict())  # strict: same names and shapes
        _assert_same_values_and_grads(ours(x), oracle(x), [x], gen)  # parameter gradients: see the functional tests


def test_gradcheck_against_finite_differences(gen):
    x = _x((3, 6), 1.0, gen)
    w, b = _affine(6, gen)
    assert torch.autograd.gradcheck(lambda x, w, b: layer_norm(x, w, b), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w, b: rms_norm(x, w, p=0.5, bias=b), (x, w, b))


def paper_rmsnorm(x, scale, p=-1.0, eps=1e-8, offset=None):
    """The forward of RMSNorm as published with the paper (bzhangGo/rmsnorm, PyTorch version)."""
    d = x.shape[-1]
    if p < 0.0 or p > 1.0:
        norm_x = x.norm(2, dim=-1, keepdim=True)
        d_x = d
    else:
        partial_size = int(d * p)
        partial_x, _ = torch.split(x, [partial_size, d - partial_size], dim=-1)
        norm_x = partial_x.norm(2, dim=-1, keepdim=True)
        d_x = partial_size
    rms_x = norm_x * d_x ** (-1.0 / 2)
    x_normed = x / (rms_x + eps)
    return scale * x_normed + offset if offset is not None else scale * x_normed


@pytest.mark.parametrize("d, p", [(16, 0.25), (10, 0.35), (33, 0.5), (8, 1.0), (64, 0.0625)])
def test_partial_rms_norm_matches_the_papers_code(d, p, gen):
    x = _x((4, d), 1.0, gen)
    w, b = _affine(d, gen)
    assert partial_size(d, p) == int(d * p)
    # eps = 0 in both: the paper adds eps to the RMS, tinycore inside the root; without eps they agree exactly
    _assert_same_values_and_grads(rms_norm(x, w, eps=0.0, p=p, bias=b), paper_rmsnorm(x, w, p, 0.0, b), [x, w, b], gen)
    ours = RMSNorm(d, eps=0.0, p=p, bias=True, dtype=torch.float64)
    with torch.no_grad():
        ours.weight.copy_(w)
        ours.bias.copy_(b)
    torch.testing.assert_close(ours(x), paper_rmsnorm(x, w, p, 0.0, b), rtol=0, atol=1e-12)


def test_eps_placement_matters_only_for_tiny_inputs(gen):
    for scale, close in [(1.0, True), (1e-4, False)]:
        x = _x((4, 32), scale, gen).detach()
        ours, paper = rms_norm(x, eps=1e-8), paper_rmsnorm(x, 1.0, eps=1e-8)
        assert torch.allclose(ours, paper, rtol=1e-6) == close


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(dtype, gen):
    x = torch.randn(4, 64, generator=gen) * 1000  # x**2 ~ 1e6 overflows float16 (max 65504)
    assert torch.isinf(x.to(torch.float16).pow(2)).any()
    for fn in (rms_norm, layer_norm):
        out = fn(x.to(dtype))
        assert out.dtype == dtype and torch.isfinite(out).all()
        torch.testing.assert_close(out.float(), fn(x.to(dtype).float()), rtol=1e-2, atol=1e-2)


def test_invariances(gen):
    x = _x((5, 24), 1.0, gen).detach()
    shifted, scaled = x + 3.0, x * 7.5
    torch.testing.assert_close(layer_norm(shifted, eps=0.0), layer_norm(x, eps=0.0))  # re-centring
    torch.testing.assert_close(layer_norm(scaled, eps=0.0), layer_norm(x, eps=0.0))  # re-scaling
    torch.testing.assert_close(rms_norm(scaled, eps=0.0), rms_norm(x, eps=0.0))  # re-scaling
    assert not torch.allclose(rms_norm(shifted, eps=0.0), rms_norm(x, eps=0.0), atol=1e-3)  # but not re-centring
    centred = x - x.mean(-1, keepdim=True)
    torch.testing.assert_close(rms_norm(centred, eps=0.0), layer_norm(centred, eps=0.0))  # equal on zero-mean input


def test_layer_norm_output_has_zero_mean_and_unit_biased_variance(gen):
    out = layer_norm(_x((6, 40), 3.0, gen, offset=2.0).detach(), eps=0.0)
    torch.testing.assert_close(out.mean(-1), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(6, dtype=torch.float64))


@pytest.mark.parametrize("p", [0, -0.5, 1.5, True, "half", 0.01])
def test_invalid_p_is_rejected_with_a_clear_error(p):
    with pytest.raises(ValueError, match="p="):
        RMSNorm(16, p=p)


def test_wrong_feature_dimension_is_named():
    with pytest.raises(ValueError, match=r"RMSNorm .* d_model=64, but x has shape \(2, 5, 32\)"):
        RMSNorm(64)(torch.zeros(2, 5, 32))
    with pytest.raises(ValueError, match=r"LayerNorm .* d_model=8, but x has shape \(3,\)"):
        LayerNorm(8)(torch.zeros(3))
    with pytest.raises(ValueError, match=r"weight should have shape \(D,\) = \(4,\)"):
        rms_norm(torch.zeros(2, 4), torch.ones(5))
