"""TransformerLM: against Hugging Face's Llama with copied weights, the KV cache against the full
forward, causality, the GPT-style configuration, and errors for bad input."""

import pytest
import torch

from tinycore import KVCache, LMConfig, TransformerLM, gpt_config, half_split_permutation, lm_loss, next_token_loss

V, CTX, D, L, H = 37, 24, 32, 2, 4


def small_lm(**kwargs) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(V, CTX, D, L, H, 48, **kwargs)


def ids(B=3, T=11, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def hf_llama(num_kv_heads: int, theta: float = 10000.0):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=D, intermediate_size=48, num_hidden_layers=L, num_attention_heads=H,
        num_key_value_heads=num_kv_heads, max_position_embeddings=CTX, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": theta}, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False,
    )
    torch.manual_seed(1)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # HF initialises norms to ones; random gains make the comparison stricter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def load_from_hf(ours: TransformerLM, hf) -> None:
    """Copy HF Llama weights into tinycore's names. HF rotates half-split pairs (x[i], x[i + Dh/2]);
    tinycore rotates interleaved pairs, so each head's q/k rows are un-permuted."""
    d_head = D // H
    perm = half_split_permutation(d_head)  # HF row j of a head = tinycore row perm[j]
    inverse = torch.argsort(perm)

    def unpermute(w: torch.Tensor) -> torch.Tensor:  # (heads * Dh, D) in HF layout -> tinycore layout
        heads = w.shape[0] // d_head
        return w.view(heads, d_head, -1)[:, inverse].reshape(w.shape)

    sd = hf.state_dict()
    new = {"token_embeddings.weight": sd["model.embed_tokens.weight"], "ln_final.weight": sd["model.norm.weight"],
           "lm_head.weight": sd["lm_head.weight"]}
    for i in range(L):
        p = f"model.layers.{i}."
        new.update({
            f"layers.{i}.ln1.weight": sd[p + "input_layernorm.weight"],
            f"layers.{i}.ln2.weight": sd[p + "post_attention_layernorm.weight"],
            f"layers.{i}.attn.q_proj.weight": unpermute(sd[p + "self_attn.q_proj.weight"]),
            f"layers.{i}.attn.k_proj.weight": unpermute(sd[p + "self_attn.k_proj.weight"]),
            f"layers.{i}.attn.v_proj.weight": sd[p + "self_attn.v_proj.weight"],
            f"layers.{i}.attn.output_proj.weight": sd[p + "self_attn.o_proj.weight"],
            f"layers.{i}.ffn.w1.weight": sd[p + "mlp.gate_proj.weight"],
            f"layers.{i}.ffn.w3.weight": sd[p + "mlp.up_proj.weight"],
            f"layers.{i}.ffn.w2.weight": sd[p + "mlp.down_proj.weight"],
        })
    ours.load_state_dict(new)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_logits_match_hugging_face_llama(num_kv_heads):
    hf = hf_llama(num_kv_heads, theta=500.0)  # a small theta makes every pair rotate visibly
    ours = small_lm(num_kv_heads=num_kv_heads, rope_theta=500.0).eval()
    load_from_hf(ours, hf)
    x = ids(T=CTX)
    with torch.no_grad():
        expected = hf(x).logits
        got = ours(x)
    assert (got - expected).abs().max() <= 1e-4
    assert expected.abs().max() > 0.1  # the comparison is not between two near-zero tensors


def test_gradients_match_hugging_face_llama():
    hf = hf_llama(2)
    ours = small_lm(num_kv_heads=2)
    load_from_hf(ours, hf)
    x, y = ids(T=16, seed=2), ids(T=16, seed=3)
    hf.train()
    lm_loss(hf(x).logits, y).backward()
    next_token_loss(ours, (x, y)).backward()
    pairs = {"token_embeddings.weight": "model.embed_tokens.weight", "layers.1.ffn.w1.weight":
             "model.layers.1.mlp.gate_proj.weight", "layers.0.attn.v_proj.weight": "model.layers.0.self_attn.v_proj.weight",
             "layers.0.ln1.weight": "model.layers.0.input_layernorm.weight"}
    ours_p, hf_p = dict(ours.named_parameters()), dict(hf.named_parameters())
    for a, b in pairs.items():
        assert torch.allclose(ours_p[a].grad, hf_p[b].grad, atol=1e-5, rtol=1e-4), a


@pytest.mark.parametrize("kwargs", [{}, {"num_kv_heads": 2}, gpt_config(V, CTX, D, L, H).__dict__])
def test_kv_cache_equals_full_forward(kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k not in ("vocab_size", "context_length", "d_model", "num_layers",
                                                          "num_heads", "d_ff")}
    model = small_lm(**kwargs).eval()
    x = ids(B=2, T=CTX)
    with torch.no_grad():
        full = model(x)
        cache = model.make_cache(2)
        pieces = [model(x[:, :7], cache=cache)]  # a prompt, then one token at a time, then a chunk
        pieces += [model(x[:, t:t + 1], cache=cache) for t in range(7, 15)]
        pieces.append(model(x[:, 15:], cache=cache))
    assert cache.length == CTX
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_logits_are_causal():
    model = small_lm()
    x = ids(B=1, T=12)
    changed = x.clone()
    changed[0, 8] = (x[0, 8] + 1) % V
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.equal(a[:, :8], b[:, :8])  # positions before 8 cannot see token 8
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_gpt_config_has_gpt2_choices_and_ties_the_head():
    model = TransformerLM.from_config(gpt_config(V, CTX, D, L, H))
    assert model.lm_head.weight is model.token_embeddings.weight
    assert model.layers[0].attn.q_proj.bias is not None and model.layers[0].ffn.w1.d_out == 4 * D
    names = dict(model.named_parameters())
    assert "position_embeddings.weight" in names and "lm_head.weight" not in names  # tied: listed once
    assert model.config == gpt_config(V, CTX, D, L, H)


def test_initialisation_scales_residual_projections():
    model = TransformerLM(V, CTX, 256, 8, 4, 512)
    assert abs(model.layers[0].attn.q_proj.weight.std().item() - 0.02) < 0.002
    assert abs(model.layers[0].attn.output_proj.weight.std().item() - 0.02 / 4) < 0.0005  # 0.02 / sqrt(2 * 8)
    assert torch.equal(model.ln_final.weight, torch.ones(256))


def test_bad_input_gets_clear_errors():
    model = small_lm()
    with pytest.raises(IndexError, match="outside the vocabulary"):
        model(torch.tensor([[1, V]]))
    with pytest.raises(ValueError, match="exceed context_length=24"):
        model(ids(T=CTX + 1))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(torch.arange(5))
    cache = model.make_cache(3)
    model(ids(T=20), cache=cache)
    with pytest.raises(ValueError, match="5 new tokens after 20 cached ones exceed context_length"):
        model(ids(T=5), cache=cache)
    with pytest.raises(ValueError, match="positions must be one of"):
        small_lm(positions="sinusoidal")
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        TransformerLM(V, CTX, 30, 1, 4, 48)
    with pytest.raises(ValueError, match="norm must be one of"):
        small_lm(norm="batchnorm")


def test_kv_cache_checks_what_it_is_given():
    cache = KVCache(num_layers=2, batch_size=2, num_kv_heads=2, max_len=4, d_head=8)
    k = torch.randn(2, 2, 3, 8)
    cache[0].append(k, k)
    with pytest.raises(ValueError, match="KV cache is full"):
        cache[0].append(k, k)
    with pytest.raises(ValueError, match="holds"):
        cache[1].append(torch.randn(3, 2, 1, 8), torch.randn(3, 2, 1, 8))
    assert cache.num_bytes() == 2 * 2 * (2 * 2 * 4 * 8) * 4  # layers * (k, v) * elements * float32


def test_lm_loss_is_cross_entropy_and_checks_shapes():
    logits = torch.randn(2, 5, V)
    y = ids(B=2, T=5)
    assert torch.allclose(lm_loss(logits, y), torch.nn.functional.cross_entropy(logits.transpose(1, 2), y))
    with pytest.raises(ValueError, match="targets' shape"):
        lm_loss(logits, y[:, :4])


def test_config_round_trips():
    config = LMConfig(V, CTX, D, L, H, 48, num_kv_heads=2, norm="layernorm")
    assert TransformerLM.from_config(config).config == config


def test_split_loss_predicts_every_token_once():
    model = small_lm()
    data = ids(B=1, T=3 * CTX + 5, seed=4)[0]
    x = data[: 3 * CTX].view(3, CTX)
    y = data[1 : 3 * CTX + 1].view(3, CTX)
    with torch.no_grad():
        expected = lm_loss(model(x), y).item()
    from tinycore import split_loss
    assert abs(split_loss(model, data, batch_size=2) - expected) < 1e-6  # batches of 2 and 1 windows, weighted
    with pytest.raises(ValueError, match="needs more than context_length"):
        split_loss(model, data[:CTX])
