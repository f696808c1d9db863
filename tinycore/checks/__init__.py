"""Exercise checkers: `checks.<exercise>(your_function)` prints one success line or raises
`CheckFailed` with what is wrong and a hint. See `checks.core` for how they work; each chapter's
checkers live in their own module."""

from .attention import causal_mask, masked_attention, stable_softmax
from .block import post_norm_block, pre_norm_block, warmup_cosine_lr
from .core import CheckFailed
from .debug import attention_scale_test, causality_test, kv_cache_consistency_test
from .decoding import cached_attention_step, cached_greedy_decode, top_p_filter
from .encoder import mask_tokens, masked_lm_loss, padding_mask
from .ffn import feed_forward, gelu, swiglu
from .heads import merge_heads, repeat_kv, split_heads
from .lm import causal_lm_loss, temperature_probs, top_k_filter
from .norms import batch_norm, layer_norm, layer_norm_backward, partial_rms_norm, rms_norm, rms_norm_module
from .positions import alibi, relative_offsets, sinusoidal_table
from .rope import apply_rope, rope_frequencies, rope_to_half_split
from .seq2seq import beam_step, cross_attention, greedy_decode, shift_right
from .shapes import last_token, masked_mean, pairwise_sq_dists
from .sizing import attention_params, flops_per_token, kv_cache_bytes, lm_params
from .swin import patch_merging, relative_position_index, shifted_window_mask, window_partition
from .tokens import count_bigrams, cross_entropy, one_hot_embed
from .vision import patch_embed_from_conv, patchify, prepend_cls

__all__ = [
    "CheckFailed",
    # chapter 0 (shapes)
    "pairwise_sq_dists", "last_token", "masked_mean",
    # chapter 1 (tokens)
    "one_hot_embed", "count_bigrams", "cross_entropy",
    # chapters 2 and 3 (norms)
    "layer_norm", "batch_norm", "layer_norm_backward", "rms_norm", "partial_rms_norm", "rms_norm_module",
    # chapter 4 (ffn)
    "gelu", "feed_forward", "swiglu",
    # chapter 5 (attention)
    "stable_softmax", "causal_mask", "masked_attention",
    # chapter 6 (heads)
    "split_heads", "merge_heads", "repeat_kv",
    # chapter 7 (positions)
    "sinusoidal_table", "relative_offsets", "alibi",
    # chapter 8 (rope)
    "rope_frequencies", "apply_rope", "rope_to_half_split",
    # chapter 9 (block)
    "pre_norm_block", "post_norm_block", "warmup_cosine_lr",
    # chapter 10 (encoder)
    "padding_mask", "mask_tokens", "masked_lm_loss",
    # chapter 11 (lm)
    "causal_lm_loss", "temperature_probs", "top_k_filter",
    # chapter 12 (decoding)
    "cached_attention_step", "top_p_filter", "cached_greedy_decode",
    # chapter 13 (seq2seq)
    "shift_right", "cross_attention", "greedy_decode", "beam_step",
    # chapter 14 (sizing)
    "attention_params", "lm_params", "kv_cache_bytes", "flops_per_token",
    # chapter 15 (vision)
    "patchify", "patch_embed_from_conv", "prepend_cls",
    # chapter 16 (swin)
    "window_partition", "shifted_window_mask", "relative_position_index", "patch_merging",
    # chapter 17 (debug)
    "causality_test", "kv_cache_consistency_test", "attention_scale_test",
]

