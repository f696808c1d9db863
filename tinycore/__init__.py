"""tinycore: the transformer components of the Transformer Anatomy course, one concept per module.

Dimension names used throughout (comments, docstrings, errors):
    B batch, T tokens (sequence length), D model width, H heads, Dh head width (D / H),
    F feed-forward width, V vocabulary size, P patches, C image channels.

Every public class and function is importable from here, e.g. ``from tinycore import RMSNorm``.
"""

from . import checks, plotting
from .bigram import BigramLM, bigram_counts, count_model_loss
from .data import TINY_SHAKESPEARE_SHA256, CharTokenizer, get_batch, load_tiny_shakespeare, train_val_split
from .layers import Embedding, Linear, check_token_ids
from .norms import LayerNorm, RMSNorm, layer_norm, partial_size, rms_norm
from .selftest import self_test
from .utils import check_shape, count_parameters, device_report, get_device, set_seed

__version__ = "0.1.0"

__all__ = [
    "checks", "plotting",
    "BigramLM", "bigram_counts", "count_model_loss",
    "TINY_SHAKESPEARE_SHA256", "CharTokenizer", "get_batch", "load_tiny_shakespeare", "train_val_split",
    "Embedding", "Linear", "check_token_ids",
    "LayerNorm", "RMSNorm", "layer_norm", "partial_size", "rms_norm",
    "self_test",
    "check_shape", "count_parameters", "device_report", "get_device", "set_seed",
]
