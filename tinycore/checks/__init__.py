"""Exercise checkers: `checks.<exercise>(your_function)` prints one success line or raises
`CheckFailed` with what is wrong and a hint. See `checks.core` for how they work."""

from .core import CheckFailed
from .norms import batch_norm, layer_norm, layer_norm_backward, partial_rms_norm, rms_norm, rms_norm_module
from .shapes import last_token, masked_mean, pairwise_sq_dists
from .tokens import count_bigrams, cross_entropy, one_hot_embed

__all__ = [
    "CheckFailed",
    # chapter 0
    "pairwise_sq_dists", "last_token", "masked_mean",
    # chapter 1
    "one_hot_embed", "count_bigrams", "cross_entropy",
    # chapter 2
    "layer_norm", "batch_norm", "layer_norm_backward",
    # chapter 3
    "rms_norm", "partial_rms_norm", "rms_norm_module",
]
