"""Turning next-token logits into text: greedy decoding, temperature, top-k and top-p (nucleus)
sampling (Holtzman et al., 2020), and a `generate` loop with an optional KV cache.

Every random choice takes a `torch.Generator`, so re-running a cell gives the same text.

Past the context: `generate` refuses to run a cached model beyond `context_length` positions
(the cache has nowhere to put them, and RoPE positions past the trained range are untested);
without the cache it slides the window, feeding the model only the last `context_length` tokens.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["sample_next", "top_k_filter", "top_p_filter", "generate"]


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row, set the rest to -inf. Shapes: (..., V) -> (..., V)"""
    if not 1 <= k:
        raise ValueError(f"top_k must be >= 1, got {k}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probabilities sum to >= p (always at least the top one).

    Shapes: (..., V) -> (..., V)
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V) each
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # (..., V): probability mass of the tokens ranked above
    drop_sorted = before >= p  # a token is dropped once the ones above it already reach p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of logits. temperature 0 means greedy (argmax).

    Shapes: logits (B, V) -> (B,)
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = logits.softmax(dim=-1)  # (B, V)
    if generator is not None and generator.device != probs.device:
        raise ValueError(f"the generator is on {generator.device} but the logits are on {probs.device}")
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B, 1) -> (B,)


@torch.no_grad()
def generate(model: nn.Module, token_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True) -> torch.Tensor:
    """Extend each row of `token_ids` by max_new_tokens sampled tokens.

    With use_cache=True the prompt is run once and then one token per step; the result is the same
    as use_cache=False, which re-runs the whole (windowed) sequence every step.

    Shapes: token_ids (B, T) -> (B, T + max_new_tokens)
    """
    if token_ids.ndim != 2:
        raise ValueError(f"generate expects token_ids of shape (B, T), got {tuple(token_ids.shape)}")
    context = model.config.context_length
    if use_cache and token_ids.shape[1] + max_new_tokens > context:
        raise ValueError(f"generate: {token_ids.shape[1]} prompt + {max_new_tokens} new tokens exceed "
                         f"context_length={context}, which a KV cache cannot hold; use_cache=False slides "
                         "the window instead")
    was_training = model.training
    model.eval()
    cache = model.make_cache(token_ids.shape[0]) if use_cache else None
    out, step_input = token_ids, token_ids
    for _ in range(max_new_tokens):
        if cache is None:
            step_input = out[:, -context:]  # (B, <= context): slide the window
        logits = model(step_input, cache=cache)[:, -1]  # (B, t, V) -> (B, V): the last position predicts
        next_id = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
        out = torch.cat((out, next_id[:, None]), dim=1)  # (B, T) -> (B, T + 1)
        step_input = next_id[:, None]  # (B, 1): with a cache, only the new token goes in
    model.train(was_training)
    return out
