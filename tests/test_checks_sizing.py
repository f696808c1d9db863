"""Chapter 14's checkers (attention_params, lm_params, kv_cache_bytes, flops_per_token) accept correct
answers and reject the stub and plausible wrong answers, naming the mistake."""

from dataclasses import replace

import pytest

from checker_harness import contract_tests
from tinycore import checks
from tinycore.checks import CheckFailed
from tinycore.checks import sizing as sizing_checks


# ---------- correct answers, written independently of tinycore.sizing ----------

def attention_params(d_model, num_heads, num_kv_heads, bias):
    d_head = d_model // num_heads
    shapes = [(d_model, d_model), (num_kv_heads * d_head, d_model), (num_kv_heads * d_head, d_model),
              (d_model, d_model)]  # (d_out, d_in) of q_proj, k_proj, v_proj, output_proj
    return sum(d_out * d_in + (d_out if bias else 0) for d_out, d_in in shapes)


def attention_params_float(d_model, num_heads, num_kv_heads, bias):
    """Same count computed with / (a whole float): accepted."""
    kv_width = num_kv_heads * d_model / num_heads
    return 2 * d_model ** 2 + 2 * d_model * kv_width + (2 * d_model + 2 * kv_width) * bias


def lm_params(c):
    D, L, V = c.d_model, c.num_layers, c.vocab_size
    kv = c.num_kv_heads or c.num_heads
    total = V * D + (c.context_length * D if c.positions == "learned" else 0) + (0 if c.tie_embeddings else V * D)
    total += L * attention_params(D, c.num_heads, kv, c.bias)
    mats = [(c.d_ff, D), (D, c.d_ff)] + ([(c.d_ff, D)] if c.ffn == "swiglu" else [])
    total += L * sum(o * i + (o if c.bias else 0) for o, i in mats)
    total += (2 * L + 1) * (2 * D if c.norm == "layernorm" else D)
    return total


def kv_cache_bytes(c, seq_len, batch_size, bytes_per_value):
    kv = c.num_kv_heads or c.num_heads
    per_token_per_layer = 2 * kv * (c.d_model // c.num_heads)  # a key and a value per kv head
    return c.num_layers * per_token_per_layer * seq_len * batch_size * bytes_per_value


def flops_per_token(c, seq_len):
    kv = c.num_kv_heads or c.num_heads
    d_head = c.d_model // c.num_heads
    attention = 2 * c.d_model * c.d_model + 2 * c.d_model * kv * d_head
    ffn = (3 if c.ffn == "swiglu" else 2) * c.d_model * c.d_ff
    weights = c.num_layers * (attention + ffn) + c.vocab_size * c.d_model
    return 2 * weights + c.num_layers * (2 + 2) * seq_len * c.d_model


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

def _lm_with(**change):
    return lambda c: lm_params(replace(c, **{k: f(c) for k, f in change.items()}))


WRONG = {
    "attention_params": [
        (lambda D, H, kv, bias: attention_params(D, H, H, bias), "as if every query head had its own"),
        (lambda D, H, kv, bias: attention_params(D, H, kv, False), "the biases are missing"),
        (lambda D, H, kv, bias: attention_params(D, H, kv, False) + 4 * D * bias, "Hkv * Dh biases each"),
        (lambda D, H, kv, bias: attention_params(D, H * H, kv, bias) + 0, "is off by"),
        (lambda D, H, kv, bias: 2 * D * D + 2 * D * kv * D + bias * (2 * D + 2 * kv * D), "not Hkv * D"),
        (lambda D, H, kv, bias: attention_params(D, H, kv, bias) - D * D - D * bias, "output_proj"),
        (lambda D, H, kv, bias: attention_params(D, H, kv, True), "count them only when bias=True"),
        (lambda D, H, kv, bias: str(attention_params(D, H, kv, bias)), "it should return a number"),
        (lambda D, H, kv, bias: attention_params(D, H, kv, bias) + 0.5, "not a whole number"),
    ],
    "lm_params": [
        (lambda c: lm_params(c) + c.vocab_size * c.d_model * c.tie_embeddings, "count it once"),
        (lambda c: lm_params(c) - c.vocab_size * c.d_model * (not c.tie_embeddings), "count it too"),
        (_lm_with(positions=lambda c: "rope"), "table of context_length x D position vectors"),
        (_lm_with(ffn=lambda c: "gelu"), "SwiGLU has three matrices"),
        (_lm_with(num_kv_heads=lambda c: None), "num_kv_heads * Dh outputs"),
        (_lm_with(bias=lambda c: False), "every Linear in attention and the FFN has one bias"),
        (_lm_with(norm=lambda c: "rmsnorm"), "LayerNorm has a bias as well as a gain"),
        (_lm_with(norm=lambda c: "layernorm"), "RMSNorm has a gain only"),
        (lambda c: lm_params(c) - (c.d_model * (2 if c.norm == "layernorm" else 1)), "ln_final"),
        (lambda c: lm_params(c) - (2 * c.num_layers + 1) * c.d_model * (2 if c.norm == "layernorm" else 1),
         "the norms are missing"),
        (lambda c: lm_params(c) + 1, "is off by +1"),
    ],
    "kv_cache_bytes": [
        (lambda c, T, B, n: kv_cache_bytes(c, T, B, n) // 2, "keys AND values"),
        (lambda c, T, B, n: kv_cache_bytes(replace(c, num_kv_heads=None), T, B, n), "only num_kv_heads heads"),
        (lambda c, T, B, n: kv_cache_bytes(c, T, B, n) // c.num_layers, "every layer stores"),
        (lambda c, T, B, n: kv_cache_bytes(c, T, 1, n), "multiply by batch_size"),
        (lambda c, T, B, n: kv_cache_bytes(c, c.context_length, B, n), "not the model's context_length"),
        (lambda c, T, B, n: 8 * kv_cache_bytes(c, T, B, n), "that is bits"),
        (lambda c, T, B, n: kv_cache_bytes(c, T, B, 2), "is off by"),
    ],
    "flops_per_token": [
        (lambda c, T: flops_per_token(c, T) - 4 * c.num_layers * T * c.d_model, "the attention term is missing"),
        (lambda c, T: flops_per_token(c, T) - 2 * c.num_layers * T * c.d_model, "half the attention term"),
        (lambda c, T: flops_per_token(c, T) - 2 * c.vocab_size * c.d_model, "the output head is missing"),
        (lambda c, T: 3 * flops_per_token(c, T), "that is training"),
        (lambda c, T: flops_per_token(c, T) // 2, "a multiply-add is two FLOPs"),
        (lambda c, T: flops_per_token(c, c.context_length), "not context_length"),
        (lambda c, T: flops_per_token(replace(c, num_kv_heads=None), T), "num_kv_heads * Dh outputs"),
        (lambda c, T: flops_per_token(replace(c, ffn="gelu"), T), "SwiGLU multiplies by three matrices"),
        (lambda c, T: 2 * lm_params(c) + 4 * c.num_layers * T * c.d_model, "2 x all the parameters"),
    ],
}

RIGHT = {
    "attention_params": [attention_params, attention_params_float],
    "lm_params": lm_params,
    "kv_cache_bytes": kv_cache_bytes,
    "flops_per_token": flops_per_token,
}

(test_accepts, test_stub, test_rejects, test_three_wrong, test_tracebacks) = contract_tests(
    RIGHT, WRONG, covers=sizing_checks.__all__)


def test_messages_name_the_mistake_and_never_show_reference_code():
    with pytest.raises(CheckFailed) as info:
        checks.lm_params(lambda c: lm_params(c) + c.vocab_size * c.d_model * c.tie_embeddings)
    message = str(info.value)
    assert "count it once" in message and "what a model built on the meta device has" in message
    assert "def " not in message and "sizing." not in message and "lambda" not in message


def test_the_checkers_references_agree_with_each_other_on_every_case():
    """The formula and the meta-device measurement are compared inside the checkers; this makes it explicit."""
    for cases in (sizing_checks._attention_cases(), sizing_checks._lm_cases(), sizing_checks._kv_cases(),
                  sizing_checks._flops_cases()):
        assert all(want == measured for _, want, measured in cases)


def test_a_function_that_is_not_callable_is_refused():
    with pytest.raises(CheckFailed, match=r"checks.lm_params\(lm_params\)"):
        checks.lm_params(124_439_808)
