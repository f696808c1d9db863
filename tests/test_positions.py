import math

import pytest
import torch

from tinycore import (
    LearnedPositionalEmbedding, MultiHeadSelfAttention, RelativePositionBias, RotaryEmbedding, alibi_bias,
    alibi_slopes, half_split_permutation, sinusoidal_positions,
)


def test_sinusoidal_table_matches_the_papers_formula():
    table = sinusoidal_positions(20, 8)
    for pos in (0, 3, 19):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    with pytest.raises(ValueError, match="must be even"):
        sinusoidal_positions(4, 7)


def test_sinusoidal_similarity_depends_only_on_the_offset():
    table = sinusoidal_positions(64, 32).double()
    sim = table @ table.T  # (T, T)
    for k in (0, 1, 5, 20):
        diagonal = torch.diagonal(sim, offset=k)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), atol=1e-5, rtol=0)


def test_learned_positions_refuse_positions_past_their_table():
    pe = LearnedPositionalEmbedding(16, 8)
    assert pe(torch.arange(16)).shape == (16, 8)
    with pytest.raises(ValueError, match=r"position 16 is outside \[0, max_seq_len=16\)"):
        pe(torch.arange(17))
    with pytest.raises(TypeError, match="must be integers"):
        pe(torch.zeros(3))


def test_relative_position_bias_looks_up_clipped_offsets():
    rpb = RelativePositionBias(num_heads=2, max_distance=2)
    with torch.no_grad():
        rpb.weight.copy_(torch.arange(10.0).view(2, 5))  # head h, offset o -> 5h + o + 2
    bias = rpb(4)
    assert bias.shape == (2, 4, 4)
    assert bias[0].tolist() == [[2, 3, 4, 4], [1, 2, 3, 4], [0, 1, 2, 3], [0, 0, 1, 2]]
    assert torch.equal(bias[1], bias[0] + 5)
    assert torch.equal(rpb(2, 4)[0], bias[0][2:])  # two queries at the end of four keys


def test_alibi_slopes_follow_the_paper():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert torch.allclose(alibi_slopes(4), torch.tensor([2.0 ** -(2 * (i + 1)) for i in range(4)]))
    # not a power of two: the 4 slopes of H=4, then every other slope of H=8 (the reference code's rule)
    assert torch.allclose(alibi_slopes(6), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]))
    bias = alibi_bias(2, 3)
    assert torch.allclose(bias[0], -torch.tensor([[0, 1, 2], [1, 0, 1], [2, 1, 0]]) / 16.0)


def llama_reference_rope(x, positions, theta):
    """RoPE as in Meta's LLaMA reference code: pairs as complex numbers times e^{i m theta_j}."""
    d = x.shape[-1]
    freqs = 1.0 / (theta ** (torch.arange(0, d, 2)[: d // 2].float() / d))
    angles = torch.outer(positions.float(), freqs)  # (T, d/2)
    rotation = torch.polar(torch.ones_like(angles), angles)
    x_complex = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(x_complex * rotation).flatten(-2).type_as(x)


@pytest.mark.parametrize("shape", [(7, 8), (2, 5, 16), (2, 3, 6, 4)])
def test_rope_matches_the_llama_reference_forward_and_gradients(shape, gen):
    rope = RotaryEmbedding(10000.0, shape[-1], 32)
    x = torch.randn(shape, generator=gen, requires_grad=True)
    positions = torch.arange(3, 3 + shape[-2])
    out, ref = rope(x, positions), llama_reference_rope(x, positions, 10000.0)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn(shape, generator=gen)
    (grad,), (ref_grad,) = torch.autograd.grad(out, x, g), torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(rope(x), llama_reference_rope(x, torch.arange(shape[-2]), 10000.0), rtol=0, atol=1e-6)


def test_rope_scores_depend_only_on_the_offset(gen):
    rope = RotaryEmbedding(10000.0, 16, 128)
    q, k = torch.randn(16, generator=gen), torch.randn(16, generator=gen)

    def score(m, n):
        return (rope(q[None], torch.tensor([m])) @ rope(k[None], torch.tensor([n])).T).item()

    for m, n in [(5, 2), (10, 10), (3, 9)]:
        for shift in (1, 17, 60):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    x = torch.randn(10, 16, generator=gen)
    torch.testing.assert_close(rope(x).norm(dim=-1), x.norm(dim=-1))  # rotations keep lengths


def half_split_rope(x, positions, theta):
    """GPT-NeoX / Hugging Face LLaMA layout: pairs (x[i], x[i + d/2]), with rotate_half."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2).float() / d)
    angles = torch.outer(positions.float(), freqs)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    rotate_half = torch.cat((-x[..., d // 2:], x[..., : d // 2]), dim=-1)
    return x * cos + rotate_half * sin


def test_interleaved_and_half_split_layouts_agree_up_to_a_permutation(gen):
    d = 12
    x = torch.randn(5, d, generator=gen)
    positions = torch.arange(5)
    interleaved = RotaryEmbedding(10000.0, d, 8)(x)
    assert not torch.allclose(interleaved, half_split_rope(x, positions, 10000.0), atol=1e-3)
    perm = half_split_permutation(d)
    torch.testing.assert_close(half_split_rope(x[:, perm], positions, 10000.0), interleaved[:, perm], rtol=0, atol=1e-6)


def test_rope_errors_name_the_problem(gen):
    rope = RotaryEmbedding(10000.0, 8, 16)
    with pytest.raises(ValueError, match="exceeds max_seq_len=16"):
        rope(torch.randn(17, 8))
    with pytest.raises(ValueError, match=r"position 16 is outside \[0, max_seq_len=16\)"):
        rope(torch.randn(2, 8), torch.tensor([3, 16]))
    with pytest.raises(ValueError, match="built for d_k=8"):
        rope(torch.randn(4, 6))
    with pytest.raises(ValueError, match="d_k must be even"):
        RotaryEmbedding(10000.0, 7, 16)


def test_rope_in_attention_with_per_sequence_positions_and_offsets(gen):
    attn = MultiHeadSelfAttention(16, 2, rope=RotaryEmbedding(10000.0, 8, 64))
    x = torch.randn(2, 6, 16, generator=gen)
    base = attn(x)
    per_sequence = attn(x, token_positions=torch.arange(6).expand(2, 6))  # (B, T) positions
    torch.testing.assert_close(per_sequence, base)
    shifted = attn(x, token_positions=torch.arange(10, 16))  # every position + 10: scores unchanged
    torch.testing.assert_close(shifted, base, rtol=1e-4, atol=1e-5)
