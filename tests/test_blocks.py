"""tinycore.TransformerBlock against PyTorch's nn.TransformerEncoderLayer with copied weights (pre-norm and
post-norm, forward and gradients of the input and every weight, float64 to 1e-10 and float32 to 1e-5), a
LLaMA-style block against a composition of PyTorch's own RMSNorm and attention, and the properties a block
must have: causality, a KV cache that changes nothing, and clear errors for bad arguments."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from tinycore import (
    FeedForward, LayerKVCache, LayerNorm, RMSNorm, RotaryEmbedding, SwiGLU, TransformerBlock, causal_mask,
)

B, T, D, H, FF = 3, 7, 24, 4, 40  # every size different, so a mixed-up axis cannot hide


def _torch_name(name: str) -> str:
    """tinycore's parameter name -> nn.TransformerEncoderLayer's (q, k, v are stacked there)."""
    return {
        "ln1.weight": "norm1.weight", "ln1.bias": "norm1.bias", "ln2.weight": "norm2.weight", "ln2.bias": "norm2.bias",
        "attn.output_proj.weight": "self_attn.out_proj.weight", "attn.output_proj.bias": "self_attn.out_proj.bias",
        "ffn.w1.weight": "linear1.weight", "ffn.w1.bias": "linear1.bias",
        "ffn.w2.weight": "linear2.weight", "ffn.w2.bias": "linear2.bias",
    }[name]


def _random_block(norm_position, dtype, gen, causal=True):
    """A GPT-2-style block (LayerNorm, GELU, biases) with every weight random, gains and biases included."""
    block = TransformerBlock(D, H, FF, causal=causal, norm="layernorm", ffn="gelu", norm_position=norm_position,
                             bias=True, dtype=dtype)
    with torch.no_grad():
        for name, p in block.named_parameters():
            base = 1.0 if name.endswith("ln1.weight") or name.endswith("ln2.weight") else 0.0
            scale = p.shape[-1] ** -0.5 if p.ndim == 2 else 1 / 3
            p.copy_(base + scale * torch.randn(p.shape, generator=gen, dtype=dtype))
    return block


def _torch_params(params: dict) -> dict:
    """tinycore's parameters, as the tensors nn.TransformerEncoderLayer needs (differentiable: torch.cat)."""
    qkv = ("attn.q_proj", "attn.k_proj", "attn.v_proj")
    out = {_torch_name(n): p for n, p in params.items() if not n.startswith(qkv)}
    out["self_attn.in_proj_weight"] = torch.cat([params[f"attn.{x}_proj.weight"] for x in "qkv"])  # (3D, D)
    out["self_attn.in_proj_bias"] = torch.cat([params[f"attn.{x}_proj.bias"] for x in "qkv"])  # (3D,)
    return out


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("norm_position", ["pre", "post"])
@pytest.mark.parametrize("causal", [True, False])
def test_block_matches_nn_transformer_encoder_layer_forward_and_gradients(norm_position, causal, dtype, atol, gen):
    block = _random_block(norm_position, dtype, gen, causal=causal)
    layer = nn.TransformerEncoderLayer(D, H, dim_feedforward=FF, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=norm_position == "pre", bias=True, dtype=dtype)
    assert set(_torch_params(dict(block.named_parameters()))) == {n for n, _ in layer.named_parameters()}
    x = torch.randn(B, T, D, generator=gen, dtype=dtype)
    grad_out = torch.randn(B, T, D, generator=gen, dtype=dtype)
    mask = ~causal_mask(T) if causal else None  # nn.TransformerEncoderLayer: True = may NOT attend

    def run(which):
        params = {n: p.detach().clone().requires_grad_(True) for n, p in block.named_parameters()}
        x_leaf = x.clone().requires_grad_(True)
        if which == "tinycore":
            y = functional_call(block, params, (x_leaf,))
        else:
            y = functional_call(layer, _torch_params(params), (x_leaf,), {"src_mask": mask})
        grads = torch.autograd.grad(y, [x_leaf, *params.values()], grad_out)
        return y, dict(zip(["x", *params], grads))

    y_ours, g_ours = run("tinycore")
    y_torch, g_torch = run("torch")
    torch.testing.assert_close(y_ours, y_torch, rtol=0, atol=atol)
    for name in g_ours:
        torch.testing.assert_close(g_ours[name], g_torch[name], rtol=0, atol=atol, msg=f"gradient of {name}")
    assert g_ours["attn.q_proj.weight"].abs().max() > 1e-3  # the comparison is not of zeros


def test_block_equals_its_equations_with_pytorchs_own_llama_parts(gen):
    """The default (LLaMA-style) block: RMSNorm, RoPE attention, SwiGLU. The oracle is nn.RMSNorm, the rotary
    attention recomputed from tinycore's q/k/v via F.scaled_dot_product_attention, and SwiGLU's formula."""
    rope = RotaryEmbedding(10000.0, D // H, T)
    for position in ("pre", "post"):
        block = TransformerBlock(D, H, FF, rope=rope, norm_position=position, dtype=torch.float64)
        with torch.no_grad():
            block.ln1.weight.copy_(1 + torch.randn(D, generator=gen, dtype=torch.float64) / 2)
            block.ln2.weight.copy_(1 + torch.randn(D, generator=gen, dtype=torch.float64) / 2)
        norms = [nn.RMSNorm(D, eps=1e-5, dtype=torch.float64) for _ in range(2)]
        for norm, ours in zip(norms, (block.ln1, block.ln2)):
            norm.load_state_dict(ours.state_dict())

        def attn(h):
            q, k, v = block.attn.qkv(h)  # (B, H, T, Dh): projected and rotated
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
            return out.transpose(1, 2).reshape(h.shape) @ block.attn.output_proj.weight.T

        def ffn(h):
            w1, w2, w3 = block.ffn.w1.weight, block.ffn.w2.weight, block.ffn.w3.weight
            return (F.silu(h @ w1.T) * (h @ w3.T)) @ w2.T

        x = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
        if position == "pre":
            h = x + attn(norms[0](x))
            want = h + ffn(norms[1](h))
        else:
            h = norms[0](x + attn(x))
            want = norms[1](h + ffn(h))
        torch.testing.assert_close(block(x), want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("norm, ffn", [("layernorm", "gelu"), ("rmsnorm", "swiglu"), ("rmsnorm", "gelu")])
@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_every_variant_builds_the_named_parts_and_keeps_the_shape(norm, ffn, norm_position, gen):
    block = TransformerBlock(D, H, FF, norm=norm, ffn=ffn, norm_position=norm_position)
    assert isinstance(block.ln1, LayerNorm if norm == "layernorm" else RMSNorm)
    assert isinstance(block.ln2, LayerNorm if norm == "layernorm" else RMSNorm)
    assert isinstance(block.ffn, SwiGLU if ffn == "swiglu" else FeedForward)
    assert block.ffn.w1.weight.shape == (FF, D)
    x = torch.randn(B, T, D, generator=gen)
    assert block(x).shape == (B, T, D)


def test_biases_only_when_asked_for():
    names = {n for n, _ in TransformerBlock(D, H, FF, norm="layernorm", ffn="gelu").named_parameters()}
    assert {n for n in names if n.endswith("bias")} == {"ln1.bias", "ln2.bias"}  # LayerNorm keeps its own
    with_bias = {n for n, _ in TransformerBlock(D, H, FF, norm="layernorm", ffn="gelu", bias=True).named_parameters()}
    assert {"attn.q_proj.bias", "attn.output_proj.bias", "ffn.w1.bias", "ffn.w2.bias"} <= with_bias
    assert not any(n.endswith("bias") for n, _ in TransformerBlock(D, H, FF).named_parameters())  # RMSNorm: none


@pytest.mark.parametrize("norm_position", ["pre", "post"])
@pytest.mark.parametrize("kwargs", [dict(), dict(num_kv_heads=2), dict(norm="layernorm", ffn="gelu", bias=True)])
def test_causal_block_the_past_does_not_see_the_future(norm_position, kwargs, gen):
    rope = RotaryEmbedding(10000.0, D // H, T)
    block = TransformerBlock(D, H, FF, rope=rope, norm_position=norm_position, dtype=torch.float64, **kwargs)
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    for t in range(T):
        changed = x.clone()
        changed[:, t:] = torch.randn(B, T - t, D, generator=gen, dtype=torch.float64)  # change position t onwards
        before, after = block(x), block(changed)
        assert torch.equal(before[:, :t], after[:, :t])
        assert not torch.allclose(before[:, t], after[:, t])


def test_a_bidirectional_block_lets_every_position_see_the_last_one(gen):
    block = TransformerBlock(D, H, FF, causal=False, dtype=torch.float64)
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    changed = x.clone()
    changed[:, -1] += 1.0
    assert ((block(x) - block(changed))[:, :-1].abs().amax(dim=-1) > 1e-6).all()


def test_a_padding_mask_matches_nn_transformer_encoder_layers_key_padding_mask(gen):
    block = _random_block("pre", torch.float64, gen, causal=False)
    layer = nn.TransformerEncoderLayer(D, H, dim_feedforward=FF, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name, p in _torch_params(dict(block.named_parameters())).items():
            layer.get_parameter(name).copy_(p)
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    real = torch.ones(B, T, dtype=torch.bool)  # True = a real token
    real[0, -3:] = False
    real[2, -1:] = False
    ours = block(x, mask=real[:, None, None, :])  # (B, 1, 1, T): the same keys for every head and query
    theirs = layer.train()(x, src_key_padding_mask=~real)  # True = padding; train(): the reference path, no fast path
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def test_a_kv_cache_gives_the_same_outputs_as_the_whole_sequence(gen):
    rope = RotaryEmbedding(10000.0, D // H, T)
    block = TransformerBlock(D, H, FF, rope=rope, num_kv_heads=2, dtype=torch.float64)
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    cache = LayerKVCache(B, 2, T, D // H, dtype=torch.float64)
    pieces = [block(x[:, :3], cache=cache), block(x[:, 3:4], cache=cache), block(x[:, 4:], cache=cache)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), block(x), rtol=0, atol=1e-10)


def test_factory_arguments_reach_every_parameter():
    block = TransformerBlock(D, H, FF, norm="layernorm", ffn="gelu", bias=True, dtype=torch.float64, device="meta")
    assert all(p.dtype == torch.float64 and p.device.type == "meta" for p in block.parameters())


@pytest.mark.parametrize("kwargs, message", [
    (dict(norm="batchnorm"), r"norm must be one of \('rmsnorm', 'layernorm'\), got 'batchnorm'"),
    (dict(norm_position="middle"), r"norm_position must be one of \('pre', 'post'\), got 'middle'"),
    (dict(ffn="relu"), r"ffn must be one of \('swiglu', 'gelu'\), got 'relu'"),
    (dict(d_model=30), "d_model=30 is not divisible by num_heads=4"),
    (dict(num_kv_heads=3), "num_heads=4 is not divisible by num_kv_heads=3"),
])
def test_bad_arguments_raise_errors_that_name_the_problem(kwargs, message):
    args = dict(d_model=D, num_heads=H, d_ff=FF) | kwargs
    with pytest.raises(ValueError, match=message):
        TransformerBlock(**args)


def test_an_input_of_the_wrong_width_is_refused(gen):
    block = TransformerBlock(D, H, FF)
    with pytest.raises(ValueError, match=f"d_model={D}"):
        block(torch.randn(B, T, D + 1, generator=gen))
