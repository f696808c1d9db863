"""tinycore: the transformer components of the Transformer Anatomy course, one concept per module.

Dimension names used throughout (comments, docstrings, errors):
    B batch, T tokens (sequence length), D model width, H heads, Dh head width (D / H),
    F feed-forward width, V vocabulary size, P patches, C image channels.

Every public class and function is importable from here, e.g. ``from tinycore import RMSNorm``.
"""

from . import checks, plotting, sizing
from .activations import gelu, silu, softmax
from .attention import (
    MultiHeadAttention, MultiHeadCrossAttention, MultiHeadSelfAttention, attention_weights, causal_mask,
    merge_heads, scaled_dot_product_attention, split_heads,
)
from .bigram import BigramLM, bigram_counts, count_model_loss
from .blocks import TransformerBlock, make_ffn, make_norm
from .ffn import FeedForward, SwiGLU, swiglu_hidden_size
from .encoder import EncoderConfig, TransformerEncoder, key_padding_mask, mask_tokens, masked_lm_loss
from .data import TINY_SHAKESPEARE_SHA256, CharTokenizer, get_batch, load_tiny_shakespeare, train_val_split
from .images import DigitsSplit, affine_warp, image_batches, load_digits_split, random_affine, random_shift
from .kv_cache import KVCache, LayerKVCache
from .layers import Embedding, Linear, check_token_ids
from .lm import LMConfig, TransformerLM, gpt_config, lm_loss, next_token_loss, split_loss
from .muon import Muon, orthogonalise
from .norms import LayerNorm, RMSNorm, layer_norm, partial_size, rms_norm
from .positions import (
    LearnedPositionalEmbedding, RelativePositionBias, RotaryEmbedding, alibi_bias, alibi_slopes,
    half_split_permutation, sinusoidal_positions,
)
from .recipes import SHAKESPEARE_GPT, SHAKESPEARE_LLAMA, Recipe
from .sampling import generate, sample_next, top_k_filter, top_p_filter
from .selftest import self_test
from .seq2seq import (
    DecoderBlock, EncoderDecoder, Seq2SeqConfig, beam_search, greedy_decode, seq2seq_loss, sequence_log_prob, shift_right,
)
from .sizing import (
    attention_params, component_of, count_by_component, ffn_params, forward_flops_per_token, kv_cache_bytes,
    lm_params, matmul_params, norm_params, param_counts, training_flops, training_memory_bytes,
)
from .swin import PatchMerging, Swin, SwinBlock, SwinConfig, WindowAttention, swin_t_config
from .tasks import DATE_FORMATS, TARGET_FORMAT, DateTask, Seq2SeqTokenizer, date_batches, format_date
from .train import History, TrainConfig, evaluate, lm_batches, lr_at, make_optimizer, train, train_step
from .vit import PatchEmbedding, ViT, ViTConfig, patchify
from .windows import (
    cyclic_shift, relative_position_index, shifted_window_mask, shifted_window_regions, window_partition, window_reverse,
)
from .utils import best_time_ms, check_shape, count_parameters, device_report, get_device, set_seed

__version__ = "0.1.0"

__all__ = [
    "checks", "plotting", "sizing",
    "gelu", "silu", "softmax",
    "MultiHeadAttention", "MultiHeadCrossAttention", "MultiHeadSelfAttention", "attention_weights", "causal_mask",
    "merge_heads", "scaled_dot_product_attention", "split_heads",
    "FeedForward", "SwiGLU", "swiglu_hidden_size",
    "LearnedPositionalEmbedding", "RelativePositionBias", "RotaryEmbedding", "alibi_bias", "alibi_slopes",
    "half_split_permutation", "sinusoidal_positions",
    "BigramLM", "bigram_counts", "count_model_loss",
    "TransformerBlock", "make_ffn", "make_norm",
    "KVCache", "LayerKVCache",
    "LMConfig", "TransformerLM", "gpt_config", "lm_loss", "next_token_loss", "split_loss",
    "generate", "sample_next", "top_k_filter", "top_p_filter",
    "History", "TrainConfig", "evaluate", "lm_batches", "lr_at", "make_optimizer", "train", "train_step",
    "TINY_SHAKESPEARE_SHA256", "CharTokenizer", "get_batch", "load_tiny_shakespeare", "train_val_split",
    "Embedding", "Linear", "check_token_ids",
    "LayerNorm", "RMSNorm", "layer_norm", "partial_size", "rms_norm",
    "self_test",
    "EncoderConfig", "TransformerEncoder", "key_padding_mask", "mask_tokens", "masked_lm_loss",
    "DigitsSplit", "affine_warp", "image_batches", "load_digits_split", "random_affine", "random_shift",
    "SHAKESPEARE_GPT", "SHAKESPEARE_LLAMA", "Recipe",
    "DecoderBlock", "EncoderDecoder", "Seq2SeqConfig", "beam_search", "greedy_decode", "seq2seq_loss",
    "sequence_log_prob", "shift_right",
    "PatchMerging", "Swin", "SwinBlock", "SwinConfig", "WindowAttention", "swin_t_config",
    "DATE_FORMATS", "TARGET_FORMAT", "DateTask", "Seq2SeqTokenizer", "date_batches", "format_date",
    "PatchEmbedding", "ViT", "ViTConfig", "patchify",
    "cyclic_shift", "relative_position_index", "shifted_window_mask", "shifted_window_regions", "window_partition",
    "window_reverse",
    "attention_params", "component_of", "count_by_component", "ffn_params", "forward_flops_per_token",
    "kv_cache_bytes", "lm_params", "matmul_params", "norm_params", "param_counts", "training_flops",
    "training_memory_bytes",
    "best_time_ms", "check_shape", "count_parameters", "device_report", "get_device", "set_seed",
    "Muon", "orthogonalise",
]
