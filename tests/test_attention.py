"""tinycore.attention against F.scaled_dot_product_attention and nn.MultiheadAttention (float32, 1e-6),
both of tinycore's paths, and the properties attention must have."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinycore import (
    MultiHeadCrossAttention, MultiHeadSelfAttention, RotaryEmbedding, attention_weights, causal_mask, merge_heads,
    scaled_dot_product_attention, split_heads,
)

ATOL = 1e-6


def _random_case(gen, lead, t_q, t_k, d_k, d_v, mask_shape=None):
    q = torch.randn(*lead, t_q, d_k, generator=gen)
    k = torch.randn(*lead, t_k, d_k, generator=gen)
    v = torch.randn(*lead, t_k, d_v, generator=gen)
    mask = None
    if mask_shape is not None:
        mask = torch.rand(mask_shape, generator=gen) < 0.7
        mask[..., 0] = True  # every query sees at least one key (F.sdpa's NaN convention differs otherwise)
    return q, k, v, mask


def _values_and_grads(fn, q, k, v, g):
    q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
    out = fn(q, k, v)
    return (out, *torch.autograd.grad(out, [q, k, v], g))


CASES = [  # (leading dims, Tq, Tk, d_k, d_v, mask shape)
    ((3,), 5, 7, 4, 6, None),
    ((3,), 5, 7, 4, 6, (3, 5, 7)),
    ((2, 4), 6, 6, 8, 8, (6, 6)),
    ((2, 4), 3, 9, 8, 5, (2, 1, 3, 9)),
    ((2, 3), 4, 11, 16, 16, (2, 3, 4, 11)),
    ((), 4, 3, 2, 5, (4, 3)),
]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("lead, t_q, t_k, d_k, d_v, mask_shape", CASES)
def test_sdpa_matches_torch_forward_and_gradients(fused, lead, t_q, t_k, d_k, d_v, mask_shape, gen):
    q, k, v, mask = _random_case(gen, lead, t_q, t_k, d_k, d_v, mask_shape)
    g = torch.randn(*lead, t_q, d_v, generator=gen)
    ours = _values_and_grads(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask, fused=fused), q, k, v, g)
    ref = _values_and_grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), q, k, v, g)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=ATOL)


@pytest.mark.parametrize("fused", [False, True])
def test_additive_bias_and_mask_together(fused, gen):
    q, k, v, mask = _random_case(gen, (2, 3), 5, 6, 4, 4, (5, 6))
    bias = torch.randn(3, 5, 6, generator=gen)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~mask, float("-inf")))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask, bias, fused=fused), ref, rtol=1e-5, atol=ATOL)


@pytest.mark.parametrize("fused", [False, True])
def test_a_fully_masked_query_row_gives_zeros_not_nan(fused, gen):
    q, k, v, _ = _random_case(gen, (2,), 4, 5, 3, 3)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[2] = False  # query 2 may attend nothing
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    out = scaled_dot_product_attention(q, k, v, mask, fused=fused)
    assert torch.equal(out[:, 2], torch.zeros(2, 3))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert torch.equal(q.grad[:, 2], torch.zeros(2, 3))
    assert torch.equal(attention_weights(q, k, mask)[:, 2], torch.zeros(2, 5))


def test_scale_is_one_over_sqrt_of_the_head_width(gen):
    q, k, _, _ = _random_case(gen, (1,), 3, 4, 16, 1)
    expected = torch.softmax(q @ k.transpose(-2, -1) / 4.0, dim=-1)  # sqrt(16) = 4
    torch.testing.assert_close(attention_weights(q, k), expected)


def test_causal_mask_with_cached_keys():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    with pytest.raises(ValueError, match="cannot be the last positions"):
        causal_mask(4, 2)


def test_attention_input_errors_name_the_problem(gen):
    q, k, v, _ = _random_case(gen, (2,), 3, 4, 5, 6)
    with pytest.raises(ValueError, match="same width d_k"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="same number of keys"):
        scaled_dot_product_attention(q, k, v[:, :3])
    with pytest.raises(ValueError, match=r"mask of shape \(3, 5\) does not broadcast"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 4))


def test_split_and_merge_heads_are_head_major_inverses(gen):
    x = torch.randn(2, 5, 12, generator=gen)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 1], x[..., 4:8])  # head 1 holds features 4..7
    assert torch.equal(merge_heads(heads), x)


def _copy_to_torch_mha(ours: MultiHeadSelfAttention) -> nn.MultiheadAttention:
    d = ours.d_model
    mha = nn.MultiheadAttention(d, ours.num_heads, bias=False, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        mha.out_proj.weight.copy_(ours.output_proj.weight)
    return mha


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_nn_multihead_attention(fused, causal, gen):
    ours = MultiHeadSelfAttention(24, 4, causal=causal, fused=fused)
    mha = _copy_to_torch_mha(ours)
    x = torch.randn(3, 7, 24, generator=gen, requires_grad=True)
    padding = torch.ones(3, 7, dtype=torch.bool)
    padding[1, 5:] = False  # sequence 1 has two padding tokens
    out = ours(x, mask=padding[:, None, None, :])  # (B, 1, 1, T): keys only
    # nn.MultiheadAttention's masks mean True = *masked*: the opposite of ours
    ref, _ = mha(x, x, x, key_padding_mask=~padding, attn_mask=~causal_mask(7) if causal else None, need_weights=False)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=ATOL)
    g = torch.randn(out.shape, generator=gen)
    ours_grads = torch.autograd.grad(out, [x, ours.q_proj.weight, ours.output_proj.weight], g)
    ref_grads = torch.autograd.grad(ref, [x, mha.in_proj_weight, mha.out_proj.weight], g)
    torch.testing.assert_close(ours_grads[0], ref_grads[0], rtol=1e-5, atol=ATOL)
    # weight gradients sum B * T outer products, so float32 accumulation order shows at ~1e-6: allow 1e-5
    torch.testing.assert_close(ours_grads[1], ref_grads[1][:24], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_grads[2], ref_grads[2], rtol=1e-5, atol=1e-5)


def test_cross_attention_matches_nn_multihead_attention_with_kdim(gen):
    ours = MultiHeadCrossAttention(16, 2, d_memory=10)
    mha = nn.MultiheadAttention(16, 2, bias=False, batch_first=True, kdim=10, vdim=10)
    with torch.no_grad():
        mha.q_proj_weight.copy_(ours.q_proj.weight)
        mha.k_proj_weight.copy_(ours.k_proj.weight)
        mha.v_proj_weight.copy_(ours.v_proj.weight)
        mha.out_proj.weight.copy_(ours.output_proj.weight)
    x, memory = torch.randn(2, 4, 16, generator=gen), torch.randn(2, 9, 10, generator=gen)
    keep = torch.rand(2, 9, generator=gen) < 0.8
    keep[:, 0] = True
    ref, _ = mha(x, memory, memory, key_padding_mask=~keep, need_weights=False)
    torch.testing.assert_close(ours(x, memory, mask=keep[:, None, None, :]), ref, rtol=1e-5, atol=ATOL)


def test_fused_and_from_scratch_paths_agree_with_rope_gqa_and_bias(gen):
    rope = RotaryEmbedding(10000.0, 8, 32)
    ours = MultiHeadSelfAttention(32, 4, rope=rope, num_kv_heads=2)
    x = torch.randn(2, 9, 32, generator=gen)
    bias = torch.randn(4, 9, 9, generator=gen)
    fused = ours(x, attn_bias=bias)
    ours.fused = False
    torch.testing.assert_close(ours(x, attn_bias=bias), fused, rtol=1e-5, atol=ATOL)


def test_grouped_query_attention_equals_attention_with_repeated_kv_heads(gen):
    gqa = MultiHeadSelfAttention(24, 6, num_kv_heads=2)
    assert gqa.k_proj.weight.shape == (8, 24)  # 2 kv heads of width 4
    full = MultiHeadSelfAttention(24, 6)
    with torch.no_grad():
        full.q_proj.weight.copy_(gqa.q_proj.weight)
        full.output_proj.weight.copy_(gqa.output_proj.weight)
        for proj_full, proj_gqa in [(full.k_proj, gqa.k_proj), (full.v_proj, gqa.v_proj)]:
            heads = proj_gqa.weight.view(2, 4, 24).repeat_interleave(3, dim=0)  # kv head g -> query heads 3g..3g+2
            proj_full.weight.copy_(heads.reshape(24, 24))
    x = torch.randn(2, 5, 24, generator=gen)
    torch.testing.assert_close(gqa(x), full(x), rtol=1e-5, atol=ATOL)


def test_causality_the_past_does_not_see_the_future(gen):
    attn = MultiHeadSelfAttention(16, 2)
    x = torch.randn(1, 8, 16, generator=gen)
    changed = x.clone()
    changed[:, 5:] = torch.randn(1, 3, 16, generator=gen)
    torch.testing.assert_close(attn(x)[:, :5], attn(changed)[:, :5])
    assert not torch.allclose(attn(x)[:, 5:], attn(changed)[:, 5:])


def test_without_positions_or_mask_attention_is_permutation_equivariant(gen):
    attn = MultiHeadSelfAttention(16, 4, causal=False)
    x = torch.randn(2, 7, 16, generator=gen)
    perm = torch.randperm(7, generator=gen)
    torch.testing.assert_close(attn(x)[:, perm], attn(x[:, perm]), rtol=1e-5, atol=ATOL)


def test_attention_weights_are_rows_that_sum_to_one(gen):
    attn = MultiHeadSelfAttention(16, 4)
    w = attn.attention_weights(torch.randn(2, 6, 16, generator=gen))
    assert w.shape == (2, 4, 6, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6))
    assert torch.equal(w.triu(1), torch.zeros_like(w))  # causal: nothing above the diagonal


def test_module_construction_and_input_errors():
    with pytest.raises(ValueError, match="d_model=30 is not divisible by num_heads=4"):
        MultiHeadSelfAttention(30, 4)
    with pytest.raises(ValueError, match="num_heads=6 is not divisible by num_kv_heads=4"):
        MultiHeadSelfAttention(24, 6, num_kv_heads=4)
    with pytest.raises(ValueError, match="RoPE was built for d_k=16, but the head width is 8"):
        MultiHeadSelfAttention(32, 4, rope=RotaryEmbedding(10000.0, 16, 8))
    with pytest.raises(ValueError, match=r"expects x of shape \(B, T, 16\), got \(2, 5, 12\)"):
        MultiHeadSelfAttention(16, 2)(torch.zeros(2, 5, 12))
    with pytest.raises(ValueError, match="does not broadcast"):
        MultiHeadSelfAttention(16, 2)(torch.zeros(2, 5, 16), mask=torch.ones(2, 4, dtype=torch.bool))
