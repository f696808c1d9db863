"""Chapter 17: every broken variant in tinycore.bugs is caught by the test the chapter uses for it, and
tinycore's own modules pass the same test. Also: each bug leaves the model runnable (it still trains)."""

import math

import pytest
import torch
import torch.nn.functional as F

import tinycore
from tinycore import LayerNorm, MultiHeadSelfAttention, RotaryEmbedding, TransformerLM, bugs


def lm(seed=0, **kwargs):
    torch.manual_seed(seed)
    return TransformerLM(17, 16, 24, 2, 3, 40, norm="layernorm", dtype=torch.float64, **kwargs).eval()


@torch.no_grad()
def is_causal(model, T=10, V=17):
    x = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(0))
    base = model(x)
    for j in range(1, T):
        y = x.clone()
        y[:, j] = (y[:, j] + 1) % V
        if not torch.allclose(model(y)[:, :j], base[:, :j], rtol=0, atol=1e-10):
            return False
    return True


@torch.no_grad()
def matches_sdpa(attn, T=7):
    B, D, H = 2, attn.d_model, attn.num_heads
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q, k, v = (p(x).view(B, T, H, D // H).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
    return torch.allclose(attn(x), attn.output_proj(out), atol=1e-10)


@torch.no_grad()
def cache_matches_full(model, T=9, prompt=3):
    x = torch.randint(0, 17, (2, T), generator=torch.Generator().manual_seed(2))
    cache = model.make_cache(2)
    steps = [model(x[:, :prompt], cache=cache)] + [model(x[:, t:t + 1], cache=cache) for t in range(prompt, T)]
    return torch.allclose(torch.cat(steps, dim=1), model(x), atol=1e-10)


def attn(cls, d_model=32, num_heads=4, seed=0, **kwargs):
    torch.manual_seed(seed)
    module = cls(d_model, num_heads, causal=True, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.5)
    return module


def test_sqrt_d_model_scale_is_caught_by_the_sdpa_oracle_with_several_heads():
    assert matches_sdpa(attn(MultiHeadSelfAttention))
    assert matches_sdpa(attn(MultiHeadSelfAttention, fused=False))
    assert not matches_sdpa(attn(bugs.SqrtDModelAttention))
    assert matches_sdpa(attn(bugs.SqrtDModelAttention, num_heads=1)), "with one head the bug does not exist"


def test_sqrt_d_model_scale_flattens_attention():
    good, broken = attn(MultiHeadSelfAttention), attn(MultiHeadSelfAttention)
    broken.__class__ = bugs.SqrtDModelAttention  # the same weights
    x = torch.randn(1, 12, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def entropy(w):
        return -(w * w.clamp_min(1e-30).log()).sum(-1).mean()

    assert entropy(broken.attention_weights(x)) > entropy(good.attention_weights(x)) + 0.05


def test_sequence_layer_norm_is_caught_by_the_per_token_and_causality_tests():
    x = torch.randn(2, 6, 24, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = x.clone()
    y[:, 1:] += 1.0  # change every token but the first
    good, broken = LayerNorm(24, dtype=torch.float64), bugs.SequenceLayerNorm(24, dtype=torch.float64)
    assert torch.allclose(good(x)[:, 0], good(y)[:, 0], atol=1e-12)
    assert not torch.allclose(broken(x)[:, 0], broken(y)[:, 0], atol=1e-6)
    assert is_causal(lm(1)) and not is_causal(bugs.swap_in(lm(1), "norm", bugs.SequenceLayerNorm))


def test_off_by_one_mask_is_caught_by_the_causality_test_and_leaks_exactly_the_next_token():
    assert not is_causal(bugs.swap_in(lm(2), "attn", bugs.OffByOneMaskAttention))
    broken = bugs.swap_in(lm(2), "attn", bugs.OffByOneMaskAttention)
    mask = broken.layers[0].attn.full_mask(None, 1, 5, "cpu")
    assert torch.equal(mask, torch.ones(5, 5, dtype=torch.bool).tril(1))


def test_cache_without_offset_is_caught_by_step_by_step_decoding_but_not_by_prefill_alone():
    assert cache_matches_full(lm(3))
    broken = bugs.swap_in(lm(3), "attn", bugs.CacheWithoutOffsetAttention)
    assert not cache_matches_full(broken)
    x = torch.randint(0, 17, (2, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # one cached call over the whole sequence: positions 0.. are right, the bug hides
        assert torch.allclose(broken(x, cache=broken.make_cache(2)), broken(x), atol=1e-10)
    assert is_causal(broken), "its uncached forward is tinycore's"


def rotate_half(x, positions, theta=10000.0):
    half = x.shape[-1] // 2
    angles = positions[:, None].double() * theta ** (-torch.arange(half).double() * 2 / x.shape[-1])
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


@pytest.mark.parametrize("permute", [True, False])
def test_rope_layout_mismatch_passes_the_relative_property_but_fails_the_checkpoint_oracle(permute):
    D, H, T = 32, 4, 9
    Dh = D // H
    g = torch.Generator().manual_seed(6)
    wq, wk = (torch.randn(D, D, generator=g, dtype=torch.float64) / math.sqrt(D) for _ in range(2))
    module = MultiHeadSelfAttention(D, H, rope=RotaryEmbedding(10000.0, Dh, 64), dtype=torch.float64)
    inverse = torch.argsort(tinycore.half_split_permutation(Dh))
    with torch.no_grad():
        for w, proj in ((wq, module.q_proj), (wk, module.k_proj)):
            proj.weight.copy_(w.view(H, Dh, D)[:, inverse].reshape(D, D) if permute else w)
    x = torch.randn(2, T, D, generator=g, dtype=torch.float64)
    pos = torch.arange(T)
    with torch.no_grad():
        got = module.attention_weights(x)
        shifted = module.attention_weights(x, token_positions=pos + 11)
    q = rotate_half((x @ wq.T).view(2, T, H, Dh).transpose(1, 2), pos)
    k = rotate_half((x @ wk.T).view(2, T, H, Dh).transpose(1, 2), pos)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(Dh)).masked_fill(~tinycore.causal_mask(T), float("-inf"))
    assert torch.allclose(got, shifted, atol=1e-5), "both layouts are valid RoPE models"
    assert torch.allclose(got, scores.softmax(-1), atol=1e-5) == permute


def test_rope_on_q_only_is_caught_by_the_relative_property():
    D, H, T = 16, 2, 8
    rope = RotaryEmbedding(10000.0, D // H, 64)
    module = attn(MultiHeadSelfAttention, D, H, seed=7)
    x = torch.randn(1, T, D, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    pos = torch.arange(T)

    def weights(positions, rotate_k):
        q, k, _ = module.project(x, x)
        q, k = rope(q, positions), (rope(k, positions) if rotate_k else k)
        return tinycore.attention_weights(q, k, tinycore.causal_mask(T))

    assert torch.allclose(weights(pos, True), weights(pos + 5, True), atol=1e-6)
    assert not torch.allclose(weights(pos, False), weights(pos + 5, False), atol=1e-3)


def test_unshifted_targets_are_caught_by_the_data_contract_and_collapse_the_loss():
    data = torch.arange(200) % 17
    x, y = tinycore.get_batch(data, 4, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y[:, :-1], x[:, 1:]), "tinycore's batches satisfy y_t = x_{t+1}"
    assert not torch.equal(x[:, :-1], x[:, 1:]), "the unshifted pipeline (y = x) breaks it"
    model = lm(9)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(20):  # copying the input is trivially learnable: "too good to be true"
        opt.zero_grad()
        loss = tinycore.lm_loss(model(x), x)
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 < math.log(17) - 1


def test_swap_in_keeps_the_weights_and_rejects_an_unknown_kind():
    model = lm(10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bugs.swap_in(model, "attn", bugs.SqrtDModelAttention)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(type(b.attn) is bugs.SqrtDModelAttention for b in model.layers)
    with pytest.raises(ValueError, match="kind must be"):
        bugs.swap_in(model, "ffn", bugs.SqrtDModelAttention)
