"""Sizing a transformer from its configuration: parameters, FLOPs and memory, without building it.

Everything here is arithmetic on an `LMConfig` (tinycore.lm), written from the architecture; the
tests check it against models built on the `meta` device (shapes, no memory) and against PyTorch's
FlopCounterMode. Notation: V vocabulary, D width, L layers, H heads, Hkv key/value heads,
Dh = D / H, F FFN width, T tokens in a sequence.

Parameters, by component (`param_counts`):

    token embeddings     V D
    positions            context_length D when learned; 0 for RoPE (a fixed rotation)
    attention, a layer   2 D^2 + 2 D Hkv Dh    q_proj, output_proj (D, D); k_proj, v_proj (Hkv Dh, D)
                         + 2 D + 2 Hkv Dh      with biases
    FFN, a layer         2 D F (GELU) or 3 D F (SwiGLU: w1, w2, w3)
                         + F + D or 2 F + D    with biases
    norms                (2 L + 1) D for RMSNorm (ln1, ln2, ln_final), twice that for LayerNorm (gain and bias)
    output head          V D, or 0 when tied to the token embeddings (it has no bias)

FLOPs count a multiply-add as 2. A token passing through a weight matrix of n entries costs 2n, so
the matrix multiplications of a forward pass cost 2 N_mm per token, where N_mm counts the weights
that multiply activations: the attention and FFN matrices and the output head (V D even when it is
tied; the embedding lookup is a gather, not a multiplication). Attention's scores q k^T and its
weighted sum of the values add 2 T D each, per token and layer, for sequences of T tokens:

    forward FLOPs per token  = 2 N_mm + 4 L T D
    training FLOPs per token = 3 x forward = 6 N_mm + 12 L T D

This is the convention of the PaLM paper's appendix B (Chowdhery et al., 2022), "model FLOPs":
every one of the T x T scores is counted, although a causal mask throws half of them away. Kaplan
et al. (2020) write 2 N + 2 L T D with N the non-embedding parameters (half this attention term, no
output head); Chinchilla (Hoffmann et al., 2022, appendix F) also counts the embedding lookup as a
multiplication, and the softmax. The backward pass costs twice the forward: every matmul needs a
gradient for its input and one for its weights, each as costly as the product itself. Hence the
rule C = 6 N D for training on D tokens (Kaplan et al., 2020).

Memory: the KV cache holds 2 L Hkv Dh values per token of every sequence (Shazeer, 2019; Ainslie
et al., 2023); training with AdamW in float32 holds 16 bytes per parameter (4 for the weights, 4
for their gradients, 8 for Adam's two moments; Rajbhandari et al., 2020), before the activations.

Deviations: norms, softmax, activation functions, residual additions, biases and RoPE are left out
of the FLOPs; they cost O(D + H T) per token and layer, against O(D^2) for the matrices.
"""

from __future__ import annotations

from torch import nn

from .blocks import FFNS, NORMS
from .lm import POSITIONS, LMConfig

__all__ = [
    "COMPONENTS", "attention_params", "ffn_params", "norm_params", "param_counts", "lm_params", "matmul_params",
    "forward_flops_per_token", "training_flops", "kv_cache_bytes", "training_memory_bytes", "component_of",
    "count_by_component",
]

COMPONENTS = ("token_embeddings", "position_embeddings", "attention", "ffn", "norms", "lm_head")
ADAMW_FP32_BYTES = {"weights": 4, "gradients": 4, "adamw_moments": 8}  # bytes per parameter, float32
_BLOCK_PARTS = {"attn": "attention", "ffn": "ffn", "ln1": "norms", "ln2": "norms"}


def _positive(**sizes) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _choose(value: str, allowed: tuple, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return value


def _kv_heads(d_model: int, num_heads: int, num_kv_heads: int | None) -> int:
    """Hkv (None means H), after checking that the heads split D and the groups split H evenly."""
    kv = num_heads if num_kv_heads is None else num_kv_heads
    _positive(d_model=d_model, num_heads=num_heads, num_kv_heads=kv)
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
    if num_heads % kv:
        raise ValueError(f"num_heads={num_heads} is not divisible by num_kv_heads={kv}")
    return kv


def _checked(config: LMConfig) -> int:
    """Validate an LMConfig; return its number of key/value heads."""
    if not isinstance(config, LMConfig):
        hint = "; pass model.config" if isinstance(getattr(config, "config", None), LMConfig) else ""
        raise TypeError(f"expected an LMConfig (model.config, gpt_config(...)), got {type(config).__name__}{hint}")
    c = config
    _positive(vocab_size=c.vocab_size, context_length=c.context_length, num_layers=c.num_layers, d_ff=c.d_ff)
    for value, allowed, what in ((c.norm, NORMS, "norm"), (c.ffn, FFNS, "ffn"), (c.positions, POSITIONS, "positions")):
        _choose(value, allowed, what)
    return _kv_heads(c.d_model, c.num_heads, c.num_kv_heads)


def _seq_len(config: LMConfig, seq_len: int | None) -> int:
    """T: the sequence length, context_length by default; the model accepts no more."""
    T = config.context_length if seq_len is None else seq_len
    _positive(seq_len=T)
    if T > config.context_length:
        raise ValueError(f"seq_len={T} exceeds the model's context_length={config.context_length}")
    return T


def attention_params(d_model: int, num_heads: int, num_kv_heads: int | None = None, bias: bool = False) -> int:
    """Parameters of one MultiHeadSelfAttention: q_proj and output_proj (D, D), k_proj and v_proj (Hkv Dh, D)."""
    kv_width = _kv_heads(d_model, num_heads, num_kv_heads) * (d_model // num_heads)  # Hkv Dh: keys' and values' width
    weights = 2 * d_model * d_model + 2 * d_model * kv_width
    biases = 2 * d_model + 2 * kv_width if bias else 0
    return weights + biases


def ffn_params(d_model: int, d_ff: int, ffn: str = "swiglu", bias: bool = False) -> int:
    """Parameters of one FFN: GELU has w1 (F, D), w2 (D, F); SwiGLU adds the up projection w3 (F, D)."""
    _positive(d_model=d_model, d_ff=d_ff)
    matrices = 3 if _choose(ffn, FFNS, "ffn") == "swiglu" else 2
    biases = (matrices - 1) * d_ff + d_model if bias else 0  # every (F, D) matrix has F biases, w2 has D
    return matrices * d_model * d_ff + biases


def norm_params(d_model: int, norm: str = "rmsnorm") -> int:
    """Parameters of one norm: RMSNorm has a gain (D,); LayerNorm a gain and a bias."""
    _positive(d_model=d_model)
    return d_model if _choose(norm, NORMS, "norm") == "rmsnorm" else 2 * d_model


def param_counts(config: LMConfig) -> dict[str, int]:
    """Parameters of TransformerLM.from_config(config), by component (see COMPONENTS); all layers summed."""
    kv = _checked(config)
    c, L, D, V = config, config.num_layers, config.d_model, config.vocab_size
    return {
        "token_embeddings": V * D,
        "position_embeddings": c.context_length * D if c.positions == "learned" else 0,
        "attention": L * attention_params(D, c.num_heads, kv, c.bias),
        "ffn": L * ffn_params(D, c.d_ff, c.ffn, c.bias),
        "norms": (2 * L + 1) * norm_params(D, c.norm),  # ln1 and ln2 in every layer, then ln_final
        "lm_head": 0 if c.tie_embeddings else V * D,  # tied: the token embeddings' matrix, counted there
    }


def lm_params(config: LMConfig) -> int:
    """All parameters of TransformerLM.from_config(config); a tied matrix counts once."""
    return sum(param_counts(config).values())


def matmul_params(config: LMConfig) -> int:
    """N_mm: the weights that multiply activations, L (attention + FFN matrices) + V D for the output head."""
    kv = _checked(config)
    c, D = config, config.d_model
    per_layer = attention_params(D, c.num_heads, kv) + ffn_params(D, c.d_ff, c.ffn)  # weights only, no biases
    return c.num_layers * per_layer + c.vocab_size * D  # the head multiplies, tied or not


def forward_flops_per_token(config: LMConfig, seq_len: int | None = None) -> int:
    """2 N_mm + 4 L T D: a forward pass over sequences of T (default context_length) tokens, per token."""
    T = _seq_len(config, seq_len)
    return 2 * matmul_params(config) + 4 * config.num_layers * T * config.d_model  # scores and weighted sum: 2 T D each


def training_flops(config: LMConfig, num_tokens: float, seq_len: int | None = None) -> float:
    """3 x forward (the backward pass costs two forwards) x tokens: 6 N_mm D + 12 L T D_model D."""
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, float)) or not num_tokens >= 0:
        raise ValueError(f"num_tokens must be a number >= 0, got {num_tokens!r}")
    return 3 * forward_flops_per_token(config, seq_len) * num_tokens


def kv_cache_bytes(config: LMConfig, seq_len: int | None = None, batch_size: int = 1, bytes_per_value: int = 2) -> int:
    """2 L Hkv Dh T B bytes: keys and values of every layer for B sequences of T tokens (default float16)."""
    kv = _checked(config)
    T = _seq_len(config, seq_len)
    _positive(batch_size=batch_size, bytes_per_value=bytes_per_value)
    d_head = config.d_model // config.num_heads
    return 2 * config.num_layers * kv * d_head * T * batch_size * bytes_per_value  # 2: keys and values


def training_memory_bytes(config: LMConfig) -> dict[str, int]:
    """Bytes held by float32 training with AdamW, activations aside: 16 per parameter in all."""
    n = lm_params(config)
    return {part: n * size for part, size in ADAMW_FP32_BYTES.items()}


def component_of(name: str) -> str:
    """The component (see COMPONENTS) of a TransformerLM parameter from its name, e.g. 'layers.3.attn.q_proj.weight'."""
    parts = name.split(".")
    if parts[0] == "layers" and len(parts) > 2 and parts[2] in _BLOCK_PARTS:
        return _BLOCK_PARTS[parts[2]]
    if parts[0] == "ln_final":
        return "norms"
    if parts[0] in COMPONENTS:
        return parts[0]
    raise ValueError(f"{name!r} is not the name of a TransformerLM parameter")


def count_by_component(model: nn.Module) -> dict[str, int]:
    """sum(p.numel()) of a built TransformerLM, grouped as in param_counts: the measurement to compare with."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():  # a shared (tied) tensor is listed once, under its first name
        counts[component_of(name)] += p.numel()
    return counts
