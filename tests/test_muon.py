"""tinycore's Muon: the same update as torch.optim.Muon (match_rms_adamw), an orthogonalised direction."""

import pytest
import torch

from tinycore import Muon, orthogonalise


def test_orthogonalise_keeps_the_singular_vectors_and_evens_out_the_singular_values():
    torch.manual_seed(0)
    for shape in [(16, 16), (40, 12), (12, 40), (3, 24, 8)]:  # square, tall, wide, a batch
        m = torch.randn(*shape, dtype=torch.float64) @ torch.diag(torch.logspace(-1, 1, shape[-1], dtype=torch.float64))
        o = orthogonalise(m).double()
        assert o.shape == m.shape
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        inner = u.mT @ o @ vh.mT  # (.., k, k): diagonal if o = U S' V^T
        diagonal = torch.diagonal(inner, dim1=-2, dim2=-1)
        off = inner - torch.diag_embed(diagonal)
        assert off.abs().max() < 0.05  # orthogonalised in bfloat16: about 3 significant digits
        assert diagonal.min() > 0.5 and diagonal.max() < 1.5  # singular values spread over 100x -> about 1


def test_orthogonalise_refuses_a_vector():
    with pytest.raises(ValueError, match="needs a matrix"):
        orthogonalise(torch.randn(5))


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon arrived in PyTorch 2.9")
@pytest.mark.parametrize("nesterov", [True, False])
def test_three_steps_equal_torch_muon(nesterov):
    torch.manual_seed(0)
    shapes = [(24, 24), (24, 24), (64, 24), (24, 64)]  # two of one shape: orthogonalised as a batch
    ours = [torch.nn.Parameter(torch.randn(s) * 0.1) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = Muon(ours, lr=0.02, weight_decay=0.1, nesterov=nesterov)
    ref = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1, nesterov=nesterov, adjust_lr_fn="match_rms_adamw")
    start = [p.detach().clone() for p in ours]
    for _ in range(3):
        grads = [torch.randn(s) for s in shapes]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q, p0 in zip(ours, theirs, start):
        moved, ref_moved = p.detach() - p0, q.detach() - p0
        # both orthogonalise in bfloat16 (3 significant digits), with the products in a different order
        assert (moved - ref_moved).norm() < 0.05 * ref_moved.norm()


def test_muon_refuses_vectors_with_a_hint():
    with pytest.raises(ValueError, match="give vectors and embedding tables to AdamW"):
        Muon([torch.nn.Parameter(torch.zeros(4))])
