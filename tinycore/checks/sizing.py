"""Checkers for chapter 14 (sizing a transformer): parameters, forward FLOPs and KV-cache bytes.

Every answer is compared with two references that must agree: tinycore.sizing's formula, and a
measurement on a model built on the `meta` device (shapes without memory): `sum(p.numel())` of its
parameters, the bytes of the KV cache it allocates, the FLOPs PyTorch's FlopCounterMode counts in
its forward pass. The configurations switch every option (norm, FFN, positions, tied head, biases,
grouped-query attention) and include GPT-2 124M and LLaMA-2 7B. A wrong total that matches a known
mistake (biases forgotten, a tied head counted twice, SwiGLU's third matrix missed, ...) is named.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from .. import sizing
from ..attention import MultiHeadSelfAttention
from ..lm import LMConfig, TransformerLM, gpt_config
from .core import Case, Diagnosis, call_learner, describe, fail, passed, require_callable

__all__ = ["attention_params", "lm_params", "kv_cache_bytes", "flops_per_token"]

GPT2_124M = gpt_config(50257, 1024, 768, 12, 12)
LLAMA2_7B = LMConfig(32000, 4096, 4096, 32, 32, 11008)
LLAMA2_70B = LMConfig(32000, 4096, 8192, 80, 64, 28672, num_kv_heads=8)

# Small configurations that between them flip every switch; every size differs within each.
SMALL = [
    gpt_config(97, 40, 48, 3, 6),  # GPT-2's choices: LayerNorm, GELU, learned positions, tied head, biases
    LMConfig(101, 32, 64, 2, 8, 176, num_kv_heads=2),  # LLaMA's choices with grouped-query attention
    LMConfig(89, 24, 40, 3, 5, 104, norm="layernorm", positions="learned", bias=True),  # SwiGLU with biases, untied
    LMConfig(83, 20, 36, 4, 6, 80, ffn="gelu", tie_embeddings=True, num_kv_heads=1),  # RMSNorm, GELU, multi-query
]


def _describe(c: LMConfig) -> str:
    kv = c.num_heads if c.num_kv_heads is None else c.num_kv_heads
    return (f"LMConfig(vocab_size={c.vocab_size}, context_length={c.context_length}, d_model={c.d_model}, "
            f"num_layers={c.num_layers}, num_heads={c.num_heads}, num_kv_heads={kv}, d_ff={c.d_ff}, norm={c.norm!r}, "
            f"ffn={c.ffn!r}, positions={c.positions!r}, tie_embeddings={c.tie_embeddings}, bias={c.bias})")


def _whole_number(name: str, got, case: Case) -> int:
    """The learner's answer as an int: an int, a whole float, or a one-element tensor holding one."""
    __tracebackhide__ = True
    value = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise fail(f"{name} returned {describe(got)}; it should return a number (an int)", case,
                   "add up the counts as Python ints and return the total.")
    if value != int(value):
        raise fail(f"{name} returned {value}, which is not a whole number", case,
                   "counts of parameters, FLOPs and bytes are whole numbers: use // rather than / to divide sizes.")
    return int(value)


def _check_counts(name: str, fn, cases, *, unit: str, hint: str, diagnoses=()) -> None:
    """Compare fn(*case.args) with the formula `want` and the meta-device measurement on every case."""
    __tracebackhide__ = True
    require_callable(fn, name)
    for case, want, measured in cases:
        if want != measured:  # the two references disagree: a bug in tinycore, not in the learner's code
            raise RuntimeError(f"checks.{name}: tinycore.sizing gives {want:,} but the model measures {measured:,}")
        got = _whole_number(name, call_learner(fn, name, case, hint), case)
        if got == want:
            continue
        message = (f"{name} returned {got:,} {unit}, expected {want:,} (what a model built on the meta device has); "
                   f"yours is off by {got - want:+,}")
        for diagnosis in diagnoses:
            try:
                wrong = diagnosis.wrong(*case.args, **case.kwargs)
            except Exception:
                continue
            if wrong == got:
                raise fail(message, case, diagnosis.hint)
        raise fail(message, case, hint)
    passed(name, len(cases))


def _measured_once(make_cases):
    """Build the cases (and their meta-device measurements) once; give each check fresh copies of the configs."""
    made = []

    @functools.wraps(make_cases)
    def cases():
        if not made:
            made.extend(make_cases())
        fresh = []
        for case, want, measured in made:
            args = tuple(replace(a) if isinstance(a, LMConfig) else a for a in case.args)  # a learner may mutate them
            fresh.append((Case(args, case.label), want, measured))
        return fresh

    return cases


def _meta_lm(config: LMConfig, **kwargs) -> TransformerLM:
    return TransformerLM.from_config(config, device="meta", **kwargs)


# ---------- attention_params(d_model, num_heads, num_kv_heads, bias) -> int ----------

@_measured_once
def _attention_cases():
    cases = []
    for D, H, kv, bias in [(48, 6, 2, True), (64, 8, 8, False), (40, 5, 5, True), (96, 12, 1, False),
                           (72, 6, 3, False), (768, 12, 12, True), (8192, 64, 8, False)]:
        layer = MultiHeadSelfAttention(D, H, num_kv_heads=kv, bias=bias, device="meta")
        measured = sum(p.numel() for p in layer.parameters())
        kind = "multi-head" if kv == H else ("multi-query" if kv == 1 else "grouped-query")
        label = f"d_model={D}, num_heads={H}, num_kv_heads={kv} ({kind}), bias={bias}"
        cases.append((Case((D, H, kv, bias), label), sizing.attention_params(D, H, kv, bias), measured))
    return cases


def _attention(D, H, kv, bias, *, width=None, squares=2, biases=None):
    """An attention count with one thing changed: the k/v width, the number of (D, D) matrices, the biases."""
    w = kv * (D // H) if width is None else width
    weights = squares * D * D + 2 * D * w
    if biases is not None:
        return weights + biases
    return weights + (squares * D + 2 * w if bias else 0)


def attention_params(fn) -> None:
    """fn(d_model, num_heads, num_kv_heads, bias) -> the parameters of one MultiHeadSelfAttention layer."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _check_counts(
        "attention_params", fn, _attention_cases(), unit="parameters",
        hint=("count the four projections one by one: the shape of each weight (d_out, d_in), plus d_out biases "
              "when bias=True. The keys and values are Hkv heads of width Dh = D / H each."),
        diagnoses=[
            Diagnosis(lambda D, H, kv, bias: _attention(D, H, kv, bias, width=D),
                      "you gave k_proj and v_proj D outputs, as if every query head had its own key/value head. "
                      "With num_kv_heads = Hkv < H they have only Hkv * Dh outputs (Dh = D / H): that is the point "
                      "of grouped- and multi-query attention."),
            Diagnosis(lambda D, H, kv, bias: _attention(D, H, kv, bias, biases=0),
                      "the weights are right but the biases are missing: with bias=True each projection adds one "
                      "bias per output feature."),
            Diagnosis(lambda D, H, kv, bias: _attention(D, H, kv, bias, biases=4 * D if bias else 0),
                      "k_proj and v_proj have Hkv * Dh outputs, so they have Hkv * Dh biases each, not D."),
            Diagnosis(lambda D, H, kv, bias: _attention(D, H, kv, bias, width=kv * D),
                      "the key/value width is Hkv * Dh (heads times the head width D / H), not Hkv * D."),
            Diagnosis(lambda D, H, kv, bias: _attention(D, H, kv, bias, squares=1),
                      "one matrix is missing: besides q_proj, k_proj and v_proj there is output_proj (D, D), "
                      "which mixes the heads' outputs."),
            Diagnosis(lambda D, H, kv, bias: _attention(D, H, kv, True),
                      "with bias=False the projections have no biases: count them only when bias=True."),
        ],
    )


# ---------- lm_params(config) -> int ----------

@_measured_once
def _lm_cases():
    return [(Case((c,), _describe(c)), sizing.lm_params(c), sum(p.numel() for p in _meta_lm(c).parameters()))
            for c in [*SMALL, GPT2_124M, LLAMA2_7B]]


def _if(condition, value):
    """A diagnosis only applies where the mistake changes the answer; None never equals a count."""
    return value if condition else None


def _lm_diagnoses():
    p, V_D = sizing.lm_params, lambda c: c.vocab_size * c.d_model
    n_norms = lambda c: 2 * c.num_layers + 1  # noqa: E731
    return [
        Diagnosis(lambda c: _if(c.tie_embeddings, p(c) + V_D(c)),
                  "with tie_embeddings=True, lm_head.weight *is* token_embeddings.weight: one (V, D) matrix, so count "
                  "it once (model.parameters() lists a shared tensor once; model.state_dict() lists it twice)."),
        Diagnosis(lambda c: _if(not c.tie_embeddings, p(c) - V_D(c)),
                  "with tie_embeddings=False the output head lm_head is a separate (V, D) matrix: count it too."),
        Diagnosis(lambda c: _if(c.positions == "learned", p(c) - c.context_length * c.d_model),
                  "with positions='learned' the model has a table of context_length x D position vectors; "
                  "RoPE (positions='rope') has none."),
        Diagnosis(lambda c: _if(c.ffn == "swiglu", p(replace(c, ffn="gelu"))),
                  "SwiGLU has three matrices, w1 (gate) and w3 (up), both (F, D), and w2 (D, F); a GELU FFN has two."),
        Diagnosis(lambda c: _if(c.ffn == "gelu", p(replace(c, ffn="swiglu"))),
                  "a GELU FFN has two matrices, w1 (F, D) and w2 (D, F); only SwiGLU has a third."),
        Diagnosis(lambda c: _if(c.num_kv_heads not in (None, c.num_heads), p(replace(c, num_kv_heads=None))),
                  "with num_kv_heads < num_heads, k_proj and v_proj have only num_kv_heads * Dh outputs (Dh = D / H)."),
        Diagnosis(lambda c: _if(c.bias, p(replace(c, bias=False))),
                  "with bias=True every Linear in attention and the FFN has one bias per output feature "
                  "(the output head has none)."),
        Diagnosis(lambda c: _if(c.norm == "layernorm", p(c) - n_norms(c) * c.d_model),
                  "LayerNorm has a bias as well as a gain: 2D parameters per norm."),
        Diagnosis(lambda c: _if(c.norm == "rmsnorm", p(c) + n_norms(c) * c.d_model),
                  "RMSNorm has a gain only (D parameters), no bias."),
        Diagnosis(lambda c: p(c) - sizing.norm_params(c.d_model, c.norm),
                  "one norm is missing: each layer has ln1 and ln2, and ln_final follows the last layer."),
        Diagnosis(lambda c: p(c) - n_norms(c) * sizing.norm_params(c.d_model, c.norm),
                  "the norms are missing: ln1 and ln2 in every layer and ln_final, each with a gain (and, for "
                  "LayerNorm, a bias) of D numbers."),
    ]


def lm_params(fn) -> None:
    """fn(config: LMConfig) -> the parameters of TransformerLM.from_config(config), a tied matrix counted once."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _check_counts(
        "lm_params", fn, _lm_cases(), unit="parameters", diagnoses=_lm_diagnoses(),
        hint=("add up the components: token embeddings, learned positions (if any), num_layers x (attention + FFN + "
              "two norms), the final norm, and the output head unless it is tied. Build the model on the meta device "
              "and compare component by component."),
    )


# ---------- kv_cache_bytes(config, seq_len, batch_size, bytes_per_value) -> int ----------

_DTYPES = {2: torch.float16, 4: torch.float32, 8: torch.float64}


@_measured_once
def _kv_cases():
    cases = []
    for c, T, B, nbytes in [(SMALL[3], 11, 3, 8), (SMALL[1], 17, 2, 4), (SMALL[0], 40, 5, 2), (SMALL[2], 9, 1, 4),
                            (LLAMA2_7B, 4096, 1, 2), (LLAMA2_70B, 4096, 8, 2)]:
        cache = _meta_lm(c, dtype=_DTYPES[nbytes]).make_cache(B, max_len=T)
        label = f"{_describe(c)}, seq_len={T}, batch_size={B}, bytes_per_value={nbytes}"
        cases.append((Case((c, T, B, nbytes), label), sizing.kv_cache_bytes(c, T, B, nbytes), cache.num_bytes()))
    return cases


def _kv(scale=1, heads=None, layers=None, batch=True, tokens=None):
    """A wrong KV-cache size built from the right one's factors."""
    def count(c, T, B, nbytes):
        h = heads(c) if heads else (c.num_heads if c.num_kv_heads is None else c.num_kv_heads)
        n_layers = layers(c) if layers else c.num_layers
        t = tokens(c, T) if tokens else T
        return scale * 2 * n_layers * h * (c.d_model // c.num_heads) * t * (B if batch else 1) * nbytes
    return count


def kv_cache_bytes(fn) -> None:
    """fn(config, seq_len, batch_size, bytes_per_value) -> bytes of the keys and values of every layer."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _check_counts(
        "kv_cache_bytes", fn, _kv_cases(), unit="bytes",
        hint=("every layer stores a key and a value vector per key/value head, of width Dh = D / H, for every "
              "token of every sequence; multiply the number of values by bytes_per_value."),
        diagnoses=[
            Diagnosis(_kv(scale=0.5), "that is the keys only: the cache holds keys AND values, a factor of 2."),
            Diagnosis(_kv(heads=lambda c: c.num_heads),
                      "with grouped-query attention only num_kv_heads heads of keys and values are stored, not "
                      "num_heads: that is where GQA saves memory."),
            Diagnosis(_kv(layers=lambda c: 1),
                      "that is one layer's cache: every layer stores its own keys and values."),
            Diagnosis(_kv(batch=False), "that is one sequence's cache: multiply by batch_size."),
            Diagnosis(_kv(tokens=lambda c, T: c.context_length),
                      "use seq_len, the number of tokens cached, not the model's context_length."),
            Diagnosis(_kv(scale=8), "that is bits: bytes_per_value is already in bytes."),
        ],
    )


# ---------- flops_per_token(config, seq_len) -> int ----------

def _counted_flops_per_token(config: LMConfig, seq_len: int, batch: int = 2) -> int:
    """FlopCounterMode's count of a meta-device forward (no arithmetic happens), per token."""
    model = _meta_lm(config, fused=False)  # the math path: scores and weighted sum are visible matmuls
    token_ids = torch.zeros(batch, seq_len, dtype=torch.long)  # on the CPU: its values are checked
    counter = FlopCounterMode(display=False)
    with counter:
        model(token_ids)
    total = counter.get_total_flops()
    if total % (batch * seq_len):
        raise RuntimeError(f"FlopCounterMode counted {total} FLOPs, not a multiple of {batch * seq_len} tokens")
    return total // (batch * seq_len)


@_measured_once
def _flops_cases():
    return [(Case((c, T), f"{_describe(c)}, seq_len={T}"), sizing.forward_flops_per_token(c, T),
             _counted_flops_per_token(c, T))
            for c, T in [(SMALL[1], 19), (SMALL[0], 40), (SMALL[2], 13), (SMALL[3], 7), (GPT2_124M, 1024),
                         (LLAMA2_7B, 256)]]


def _flops(mm=2, attention=4, head=True, params=None, config_change=None):
    """A wrong forward count: mm FLOPs per matmul weight, `attention` x L T D, variants of N_mm."""
    def count(c, T):
        if config_change:
            c = replace(c, **config_change(c))
        n = params(c) if params else sizing.matmul_params(c) - (0 if head else c.vocab_size * c.d_model)
        return mm * n + attention * c.num_layers * T * c.d_model
    return count


def flops_per_token(fn) -> None:
    """fn(config, seq_len) -> forward FLOPs per token: 2 per matmul weight (output head included) + 4 L T D."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _check_counts(
        "flops_per_token", fn, _flops_cases(), unit="FLOPs per token",
        hint=("two FLOPs (a multiply and an add) per weight of every matrix a token passes through: the attention "
              "and FFN matrices and the output head; then, per layer, 2 T D for the scores q k^T and 2 T D for the "
              "weighted sum of the values."),
        diagnoses=[
            Diagnosis(_flops(attention=0), "the attention term is missing: per layer, the scores q k^T and the "
                                           "weighted sum of the values cost 2 T D FLOPs each per token."),
            Diagnosis(_flops(attention=2), "that is half the attention term (Kaplan et al.'s convention, the "
                                           "causal half): count all T x T scores, 2 T D for q k^T and 2 T D for the "
                                           "weighted sum, per token and layer."),
            Diagnosis(_flops(params=sizing.lm_params), "2 x all the parameters counts the embedding lookup, the "
                                                       "norms and the biases, which do not multiply, and misses the "
                                                       "tied head: count the weights of the matrix multiplications."),
            Diagnosis(_flops(head=False), "the output head is missing: it multiplies every token by a (V, D) matrix, "
                                          "2 V D FLOPs, also when it is tied to the embeddings."),
            Diagnosis(_flops(mm=6, attention=12), "that is training (forward and backward, 3 x the forward): the "
                                                  "checker asks for the forward pass only."),
            Diagnosis(_flops(mm=1, attention=2), "a multiply-add is two FLOPs: count 2 per weight, not 1."),
            Diagnosis(lambda c, T: _flops()(c, c.context_length),
                      "use seq_len, the length of the sequences processed, not context_length."),
            Diagnosis(_flops(config_change=lambda c: {"num_kv_heads": None}),
                      "with num_kv_heads < num_heads, k_proj and v_proj have only num_kv_heads * Dh outputs."),
            Diagnosis(_flops(config_change=lambda c: {"ffn": "gelu" if c.ffn == "swiglu" else "swiglu"}),
                      "SwiGLU multiplies by three matrices (w1, w3: (F, D); w2: (D, F)), a GELU FFN by two."),
        ],
    )
