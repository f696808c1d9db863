"""tinycore.sizing: the formulas against models built on the meta device (every switch of LMConfig),
against Hugging Face's GPT-2 and Llama, against FlopCounterMode (forward and backward) and against
the bytes a real KV cache and a real AdamW step hold; errors for bad input."""

import itertools
from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tinycore import LMConfig, MultiHeadSelfAttention, TransformerLM, gpt_config, make_optimizer, next_token_loss
from tinycore.ffn import FeedForward, SwiGLU
from tinycore.norms import LayerNorm, RMSNorm
from tinycore.sizing import (
    COMPONENTS, attention_params, component_of, count_by_component, ffn_params, forward_flops_per_token, kv_cache_bytes,
    lm_params, matmul_params, norm_params, param_counts, training_flops, training_memory_bytes,
)
from tinycore.train import TrainConfig

GPT2_124M = gpt_config(50257, 1024, 768, 12, 12)
LLAMA2_7B = LMConfig(32000, 4096, 4096, 32, 32, 11008)
LLAMA2_70B = LMConfig(32000, 4096, 8192, 80, 64, 28672, num_kv_heads=8)

SWITCHES = list(itertools.product(("rmsnorm", "layernorm"), ("swiglu", "gelu"), ("rope", "learned"), (False, True),
                                  (False, True), (None, 2, 1)))


def grid_config(norm, ffn, positions, tie, bias, kv) -> LMConfig:
    return LMConfig(53, 19, 24, 2, 4, 40, num_kv_heads=kv, norm=norm, ffn=ffn, positions=positions,
                    tie_embeddings=tie, bias=bias)


def meta_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------- parameters ----------

@pytest.mark.parametrize("switches", SWITCHES, ids=["-".join(map(str, s)) for s in SWITCHES])
def test_param_counts_equal_a_meta_model_component_by_component(switches):
    config = grid_config(*switches)
    model = TransformerLM.from_config(config, device="meta")
    assert param_counts(config) == count_by_component(model)
    assert lm_params(config) == meta_count(model)


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_norm_position_changes_no_count(norm_position):
    config = replace(grid_config("layernorm", "gelu", "learned", True, True, 2), norm_position=norm_position)
    assert lm_params(config) == meta_count(TransformerLM.from_config(config, device="meta"))


@pytest.mark.parametrize("config, expected", [(GPT2_124M, 124_439_808), (LLAMA2_7B, 6_738_415_616),
                                              (LLAMA2_70B, 68_976_648_192)])
def test_famous_models(config, expected):
    assert lm_params(config) == expected == meta_count(TransformerLM.from_config(config, device="meta"))


def test_component_formulas_equal_the_built_modules():
    for D, H, kv, bias in [(24, 4, None, False), (24, 4, 2, True), (30, 6, 1, True), (64, 8, 4, False)]:
        layer = MultiHeadSelfAttention(D, H, num_kv_heads=kv, bias=bias, device="meta")
        assert attention_params(D, H, kv, bias) == meta_count(layer)
    for D, F, bias in [(24, 40, False), (24, 40, True), (10, 7, True)]:
        assert ffn_params(D, F, "swiglu", bias) == meta_count(SwiGLU(D, F, bias=bias, device="meta"))
        assert ffn_params(D, F, "gelu", bias) == meta_count(FeedForward(D, F, bias=bias, device="meta"))
    assert norm_params(24, "rmsnorm") == meta_count(RMSNorm(24))
    assert norm_params(24, "layernorm") == meta_count(LayerNorm(24))


def test_twelve_l_d_squared_rule_is_exact_for_a_bias_free_4d_gelu_model():
    config = LMConfig(100, 16, 32, 3, 4, 128, ffn="gelu")
    counts = param_counts(config)
    assert counts["attention"] + counts["ffn"] == 12 * 3 * 32 ** 2


def test_tied_head_counts_once_although_the_state_dict_lists_it_twice():
    config = gpt_config(61, 16, 24, 2, 4)
    model = TransformerLM.from_config(config, device="meta")
    assert model.lm_head.weight is model.token_embeddings.weight
    assert param_counts(config)["lm_head"] == 0
    assert sum(t.numel() for t in model.state_dict().values()) == lm_params(config) + 61 * 24


def test_gqa_saves_exactly_the_key_value_width():
    D, H = 64, 8
    for kv in (4, 2, 1):
        assert attention_params(D, H) - attention_params(D, H, kv) == 2 * D * (H - kv) * (D // H)


@pytest.mark.slow
@pytest.mark.parametrize("config", [GPT2_124M, gpt_config(97, 40, 48, 3, 6)])
def test_hugging_face_gpt2_has_as_many_parameters(config):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.GPT2Config(vocab_size=config.vocab_size, n_positions=config.context_length,
                                        n_embd=config.d_model, n_layer=config.num_layers, n_head=config.num_heads)
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(hf_config)
    assert lm_params(config) == meta_count(hf)


@pytest.mark.slow
@pytest.mark.parametrize("config", [LLAMA2_7B, LLAMA2_70B, LMConfig(101, 32, 64, 2, 8, 176, num_kv_heads=2)])
def test_hugging_face_llama_has_as_many_parameters(config):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, intermediate_size=config.d_ff,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads, tie_word_embeddings=False)
    with torch.device("meta"):
        hf = transformers.LlamaForCausalLM(hf_config)
    assert lm_params(config) == meta_count(hf)


# ---------- FLOPs ----------

FLOP_CONFIGS = [
    (LMConfig(53, 19, 24, 2, 4, 40), 19),
    (LMConfig(53, 19, 24, 2, 4, 40, num_kv_heads=2, ffn="gelu", tie_embeddings=True), 11),
    (gpt_config(61, 16, 32, 3, 4), 16),
    (LMConfig(47, 12, 30, 1, 6, 50, num_kv_heads=1, norm="layernorm", positions="learned", bias=True), 5),
]


def counted(model, token_ids):
    """FlopCounterMode's forward and backward counts, and the forward split into mm and bmm."""
    forward_counter, backward_counter = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with forward_counter:
        logits = model(token_ids)
    with backward_counter:
        logits.sum().backward()
    split = {str(op).split(".")[-1]: n for op, n in forward_counter.get_flop_counts()["Global"].items()}
    return forward_counter.get_total_flops(), backward_counter.get_total_flops(), split


@pytest.mark.parametrize("config, T", FLOP_CONFIGS)
def test_forward_flops_equal_flop_counter_mode_and_backward_is_twice_the_forward(config, T):
    torch.manual_seed(0)
    model = TransformerLM.from_config(config, fused=False)  # the math path: attention's matmuls are counted
    B = 3
    token_ids = torch.randint(0, config.vocab_size, (B, T))
    forward, backward, split = counted(model, token_ids)
    assert forward == B * T * forward_flops_per_token(config, T)
    weights = split.get("mm", 0) + split.get("addmm", 0)  # addmm: a Linear with a bias
    assert weights == B * T * 2 * matmul_params(config)  # the weights
    assert split["bmm"] == B * T * 4 * config.num_layers * T * config.d_model  # scores and weighted sum
    assert backward == 2 * forward
    assert training_flops(config, B * T, T) == forward + backward


@pytest.mark.parametrize("config, T", [(GPT2_124M, 1024), (LLAMA2_7B, 128)])
def test_famous_models_forward_flops_counted_on_the_meta_device(config, T):
    model = TransformerLM.from_config(config, device="meta", fused=False)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, T, dtype=torch.long))  # ids on the CPU (their values are checked), nothing computed
    assert counter.get_total_flops() == T * forward_flops_per_token(config, T)


def test_flops_grow_linearly_with_the_sequence_length():
    f = [forward_flops_per_token(LLAMA2_7B, T) for T in (1024, 2048, 4096)]
    assert f[2] - f[1] == 2 * (f[1] - f[0]) == 2 * 4 * 32 * 1024 * 4096
    assert forward_flops_per_token(LLAMA2_7B) == f[2]


# ---------- memory ----------

@pytest.mark.parametrize("config, T, B, dtype", [
    (LLAMA2_7B, 4096, 1, torch.float16), (LLAMA2_70B, 4096, 8, torch.bfloat16),
    (LMConfig(53, 19, 24, 2, 4, 40, num_kv_heads=2), 7, 3, torch.float32),
    (gpt_config(61, 16, 32, 3, 4), 16, 2, torch.float64),
])
def test_kv_cache_bytes_equal_the_cache_the_model_allocates(config, T, B, dtype):
    cache = TransformerLM.from_config(config, device="meta", dtype=dtype).make_cache(B, max_len=T)
    assert kv_cache_bytes(config, T, B, torch.finfo(dtype).bits // 8) == cache.num_bytes()


def test_llama2_kv_cache_numbers():
    assert kv_cache_bytes(LLAMA2_7B, 1) == 512 * 1024  # 512 KiB per token in float16
    assert kv_cache_bytes(LLAMA2_70B, 1) == 320 * 1024  # 80 layers, but 8 key/value heads
    assert kv_cache_bytes(LLAMA2_7B) == 2 * 2 ** 30  # 2 GiB for a full 4096-token context


def test_kv_cache_of_a_real_generation_holds_what_the_formula_says():
    config = LMConfig(53, 19, 24, 2, 4, 40, num_kv_heads=2)
    torch.manual_seed(0)
    model = TransformerLM.from_config(config)
    cache = model.make_cache(2, max_len=9)
    model(torch.randint(0, 53, (2, 9)), cache=cache)
    assert cache.length == 9
    filled = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.k, layer.v))
    assert filled == kv_cache_bytes(config, 9, 2, 4)


def test_training_memory_equals_weights_gradients_and_adamw_state_after_a_step():
    config = LMConfig(53, 19, 24, 2, 4, 40, num_kv_heads=2, bias=True, positions="learned")
    torch.manual_seed(0)
    model = TransformerLM.from_config(config)
    optimizer = make_optimizer(model, TrainConfig())
    x = torch.randint(0, 53, (2, 19))
    next_token_loss(model, (x, x)).backward()
    optimizer.step()
    params = list(model.parameters())
    held = {
        "weights": sum(p.numel() * p.element_size() for p in params),
        "gradients": sum(p.grad.numel() * p.grad.element_size() for p in params),
        "adamw_moments": sum(t.numel() * t.element_size() for state in optimizer.state.values()
                             for name, t in state.items() if name in ("exp_avg", "exp_avg_sq")),
    }
    assert training_memory_bytes(config) == held
    assert sum(held.values()) == 16 * lm_params(config)


# ---------- names and errors ----------

def test_component_of_every_parameter_name():
    model = TransformerLM.from_config(grid_config("layernorm", "swiglu", "learned", False, True, 2), device="meta")
    assert {component_of(name) for name, _ in model.named_parameters()} == set(COMPONENTS)
    assert component_of("layers.11.attn.k_proj.bias") == "attention"
    assert component_of("ln_final.weight") == "norms"
    with pytest.raises(ValueError, match="not the name of a TransformerLM parameter"):
        component_of("encoder.layers.0.attn.q_proj.weight")


@pytest.mark.parametrize("call, error, match", [
    (lambda: lm_params(TransformerLM(11, 8, 8, 1, 2, 16)), TypeError, "pass model.config"),
    (lambda: lm_params({"d_model": 8}), TypeError, "expected an LMConfig"),
    (lambda: lm_params(LMConfig(11, 8, 10, 1, 4, 16)), ValueError, "d_model=10 is not divisible by num_heads=4"),
    (lambda: lm_params(LMConfig(11, 8, 12, 1, 6, 16, num_kv_heads=4)), ValueError,
     "num_heads=6 is not divisible by num_kv_heads=4"),
    (lambda: lm_params(LMConfig(11, 8, 12, 1, 6, 16, num_kv_heads=0)), ValueError, "num_kv_heads must be a positive"),
    (lambda: lm_params(LMConfig(0, 8, 12, 1, 6, 16)), ValueError, "vocab_size must be a positive integer"),
    (lambda: lm_params(LMConfig(11, 8, 12, 1.5, 6, 16)), ValueError, "num_layers must be a positive integer"),
    (lambda: lm_params(LMConfig(11, 8, 12, 1, 6, 16, norm="batchnorm")), ValueError, "norm must be one of"),
    (lambda: lm_params(LMConfig(11, 8, 12, 1, 6, 16, ffn="relu")), ValueError, "ffn must be one of"),
    (lambda: lm_params(LMConfig(11, 8, 12, 1, 6, 16, positions="alibi")), ValueError, "positions must be one of"),
    (lambda: forward_flops_per_token(LLAMA2_7B, 5000), ValueError,
     "seq_len=5000 exceeds the model's context_length=4096"),
    (lambda: forward_flops_per_token(LLAMA2_7B, 0), ValueError, "seq_len must be a positive integer"),
    (lambda: kv_cache_bytes(LLAMA2_7B, 10, batch_size=0), ValueError, "batch_size must be a positive integer"),
    (lambda: kv_cache_bytes(LLAMA2_7B, 10, bytes_per_value=0.5), ValueError, "bytes_per_value must be a positive"),
    (lambda: training_flops(LLAMA2_7B, -1), ValueError, "num_tokens must be a number >= 0"),
    (lambda: attention_params(10, 3), ValueError, "d_model=10 is not divisible by num_heads=3"),
    (lambda: ffn_params(8, 0), ValueError, "d_ff must be a positive integer"),
    (lambda: ffn_params(8, 16, "geglu"), ValueError, "ffn must be one of"),
    (lambda: norm_params(8, "groupnorm"), ValueError, "norm must be one of"),
])
def test_bad_input_raises_an_error_naming_the_problem(call, error, match):
    with pytest.raises(error, match=match):
        call()
