"""Exercise checkers: `checks.<exercise>(your_function)` prints one success line or raises
`CheckFailed` with what is wrong and a hint. See `checks.core` for how they work; each chapter's
checkers live in their own module."""

from .attention import causal_mask, masked_attention, stable_softmax
from .core import CheckFailed
from .ffn import feed_forward, gelu, swiglu
from .heads import merge_heads, repeat_kv, split_heads
from .norms import batch_norm, layer_norm, layer_norm_backward, partial_rms_norm, rms_norm, rms_norm_module
from .positions import alibi, relative_offsets, sinusoidal_table
from .rope import apply_rope, rope_frequencies, rope_to_half_split
from .shapes import last_token, masked_mean, pairwise_sq_dists
from .tokens import count_bigrams, cross_entropy, one_hot_embed

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
]

# Parts III and IV: checker modules being written this round; explicit imports replace these stars.
from . import block as _block, decoding as _decoding, encoder as _encoder, lm as _lm  # noqa: E402
from . import seq2seq as _seq2seq, sizing as _sizing, swin as _swin, vision as _vision  # noqa: E402
from .block import *  # noqa: E402,F401,F403
from .decoding import *  # noqa: E402,F401,F403
from .encoder import *  # noqa: E402,F401,F403
from .lm import *  # noqa: E402,F401,F403
from .seq2seq import *  # noqa: E402,F401,F403
from .sizing import *  # noqa: E402,F401,F403
from .swin import *  # noqa: E402,F401,F403
from .vision import *  # noqa: E402,F401,F403

for _m in (_block, _decoding, _encoder, _lm, _seq2seq, _sizing, _swin, _vision):
    __all__ += list(_m.__all__)
