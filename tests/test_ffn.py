import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinycore import FeedForward, SwiGLU, count_parameters, swiglu_hidden_size


@pytest.mark.parametrize("lead", [(5,), (2, 7), (2, 3, 4)])
def test_feed_forward_equals_an_nn_sequential_with_copied_weights(lead, gen):
    ffn = FeedForward(12, 40)
    oracle = nn.Sequential(nn.Linear(12, 40, bias=False), nn.GELU(), nn.Linear(40, 12, bias=False))
    oracle[0].weight.data.copy_(ffn.w1.weight)
    oracle[2].weight.data.copy_(ffn.w2.weight)
    x = torch.randn(*lead, 12, generator=gen, requires_grad=True)
    out, ref = ffn(x), oracle(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn(out.shape, generator=gen)
    grads = torch.autograd.grad(out, [x, ffn.w1.weight, ffn.w2.weight], g)
    ref_grads = torch.autograd.grad(ref, [x, oracle[0].weight, oracle[2].weight], g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_feed_forward_is_a_kernel_size_one_convolution(gen):
    ffn = FeedForward(8, 24)
    conv1 = nn.Conv1d(8, 24, kernel_size=1, bias=False)
    conv2 = nn.Conv1d(24, 8, kernel_size=1, bias=False)
    conv1.weight.data.copy_(ffn.w1.weight[:, :, None])  # (F, D) -> (F, D, 1)
    conv2.weight.data.copy_(ffn.w2.weight[:, :, None])
    x = torch.randn(3, 10, 8, generator=gen)  # (B, T, D)
    conv_out = conv2(F.gelu(conv1(x.transpose(1, 2)))).transpose(1, 2)  # Conv1d wants (B, D, T)
    torch.testing.assert_close(ffn(x), conv_out, rtol=0, atol=1e-6)


def test_swiglu_matches_its_formula_and_gradients(gen):
    ffn = SwiGLU(10, 28)
    x = torch.randn(2, 6, 10, generator=gen, requires_grad=True)
    w1, w2, w3 = ffn.w1.weight, ffn.w2.weight, ffn.w3.weight
    out, ref = ffn(x), (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn(out.shape, generator=gen)
    for a, b in zip(torch.autograd.grad(out, [x, w1, w2, w3], g), torch.autograd.grad(ref, [x, w1, w2, w3], g)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_parameter_matched_swiglu_has_the_parameters_of_a_4d_gelu_ffn():
    d = 96
    assert swiglu_hidden_size(d) == 256 and swiglu_hidden_size(100, multiple_of=64) == 320
    assert count_parameters(SwiGLU(d, swiglu_hidden_size(d))) == count_parameters(FeedForward(d, 4 * d))


def test_same_ffn_at_every_position(gen):
    ffn = FeedForward(6, 12)
    x = torch.randn(1, 9, 6, generator=gen)
    perm = torch.randperm(9, generator=gen)
    torch.testing.assert_close(ffn(x)[:, perm], ffn(x[:, perm]))
    with pytest.raises(ValueError, match="d_in=6"):
        ffn(torch.randn(2, 3, 7))
