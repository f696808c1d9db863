import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinycore import Embedding, Linear


@pytest.mark.parametrize("lead", [(), (5,), (2, 3), (2, 3, 4)])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_equals_nn_linear_forward_and_gradients(lead, bias, gen):
    ours = Linear(6, 4, bias=bias, dtype=torch.float64)
    oracle = nn.Linear(6, 4, bias=bias, dtype=torch.float64)
    oracle.load_state_dict(ours.state_dict())  # same names and (d_out, d_in) layout
    x = torch.randn(*lead, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    out, ref = ours(x), oracle(x)
    assert out.shape == (*lead, 4)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    ours_grads = torch.autograd.grad(out, [x, *ours.parameters()], g)
    oracle_grads = torch.autograd.grad(ref, [x, *oracle.parameters()], g)
    for a, b in zip(ours_grads, oracle_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_linear_init_scale_and_truncation():
    torch.manual_seed(0)
    layer = Linear(512, 256)
    std = (2 / (512 + 256)) ** 0.5
    assert layer.weight.shape == (256, 512)
    assert abs(layer.weight.std().item() / std - 0.9866) < 0.02  # cutting the normal at 3 sigma leaves 0.9866 sigma
    assert layer.weight.abs().max().item() <= 3 * std + 1e-7


def test_linear_wrong_input_width_is_named():
    with pytest.raises(ValueError, match=r"last dimension of x to be d_in=6, got shape \(2, 5\)"):
        Linear(6, 4)(torch.zeros(2, 5))


def test_embedding_equals_f_embedding_and_one_hot_matmul(gen):
    emb = Embedding(10, 3, dtype=torch.float64)
    ids = torch.randint(10, (2, 7), generator=gen)
    out = emb(ids)
    assert out.shape == (2, 7, 3)
    torch.testing.assert_close(out, F.embedding(ids, emb.weight), rtol=0, atol=0)
    torch.testing.assert_close(out, F.one_hot(ids, 10).double() @ emb.weight, rtol=0, atol=1e-15)
    (grad,) = torch.autograd.grad(out.sum(), emb.weight)
    counts = torch.bincount(ids.flatten(), minlength=10).double()
    torch.testing.assert_close(grad, counts[:, None].expand(10, 3))  # each row's gradient = how often it was used


def test_embedding_rejects_bad_token_ids():
    emb = Embedding(10, 3)
    with pytest.raises(TypeError, match="integer tensor.*float32"):
        emb(torch.tensor([1.0, 2.0]))
    with pytest.raises(IndexError, match=r"contains id 10, outside the vocabulary \[0, 10\)"):
        emb(torch.tensor([3, 10]))
    with pytest.raises(IndexError, match="contains id -1"):
        emb(torch.tensor([-1, 3]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        emb([1, 2])
