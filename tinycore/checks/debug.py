"""Chapter 17's checkers: the learner writes *tests*, and each checker runs that test on a zoo of
correct and broken models and says which ones it misjudged.

A test is a function returning True when the model under test is correct. It must return True for
every correct model of the zoo and False for every broken one, the subtle ones included (a leak
that only one position has, a cache bug that only shows after the first decoding step, a scale
that is wrong only when there is more than one head). So a test that always answers True, or
always False, or looks in only one place, is rejected, naming the model it got wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..attention import MultiHeadSelfAttention, split_heads
from ..bugs import CacheWithoutOffsetAttention, OffByOneMaskAttention, SequenceLayerNorm, SqrtDModelAttention, swap_in
from ..lm import TransformerLM
from .core import CheckFailed, describe, require_callable

__all__ = ["causality_test", "kv_cache_consistency_test", "attention_scale_test"]


@dataclass
class Specimen:
    """One model of a zoo: what it is, how to build it (seeded), and whether it is correct."""

    description: str
    build: Callable
    correct: bool


def _lm(vocab_size=13, context_length=16, d_model=24, num_heads=3, seed=0, **kwargs) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(vocab_size, context_length, d_model, 2, num_heads, 40, dtype=torch.float64, **kwargs).eval()


class _PrefixMean(nn.Module):
    """Logits from the running mean of the embeddings so far: causal without attention."""

    def __init__(self, vocab_size: int, width: int, seed: int, leak_from: int | None = None, leak_to: int = 0,
                 leak: float = 0.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.randn(vocab_size, width, generator=g, dtype=torch.float64)  # (V, W)
        self.out = torch.randn(width, vocab_size, generator=g, dtype=torch.float64)  # (W, V)
        self.leak_from, self.leak_to, self.leak = leak_from, leak_to, leak

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        e = self.emb[token_ids]  # (B, T) -> (B, T, W)
        counts = torch.arange(1, e.shape[1] + 1, dtype=e.dtype)[:, None]  # (T, 1)
        h = e.cumsum(dim=1) / counts  # (B, T, W): the mean of positions 0..t
        if self.leak_from is not None:  # one position sees one later token, a little
            h = h.clone()
            h[:, self.leak_to] = h[:, self.leak_to] + self.leak * e[:, self.leak_from]
        return h @ self.out  # (B, T, W) -> (B, T, V)


class _Bidirectional(_PrefixMean):
    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        e = self.emb[token_ids]  # (B, T, W)
        return (0.5 * e + 0.5 * e.mean(dim=1, keepdim=True)) @ self.out  # every position sees every token


def _expect(name: str, fn: Callable, zoo: list[Specimen], call: Callable, hint: str) -> None:
    """Run the learner's test on every specimen; raise CheckFailed at the first misjudged one."""
    __tracebackhide__ = True
    require_callable(fn, name)
    for specimen in zoo:
        try:
            verdict = call(fn, specimen.build())
        except NotImplementedError:
            raise
        except Exception as err:
            raise CheckFailed(f"{name} raised {type(err).__name__}: {err}\n  on: {specimen.description}\n"
                              f"  Hint: {hint}") from err
        if isinstance(verdict, torch.Tensor) and verdict.numel() == 1 and verdict.dtype == torch.bool:
            verdict = bool(verdict)
        if not isinstance(verdict, bool):
            raise CheckFailed(f"{name} returned {describe(verdict)}; it should return True or False\n"
                              f"  on: {specimen.description}")
        if verdict != specimen.correct:
            said = "True (correct)" if verdict else "False (broken)"
            truth = "correct" if specimen.correct else "BROKEN"
            raise CheckFailed(f"{name} returned {said} for {specimen.description}, which is {truth}\n"
                              f"  Hint: {hint}")
    print(f"✅ {name}: correct on all {len(zoo)} models ({sum(s.correct for s in zoo)} correct, "
          f"{sum(not s.correct for s in zoo)} broken)")


def _call_with(*extra) -> Callable:
    def call(fn, model):
        __tracebackhide__ = True
        return fn(model, *(e.clone() for e in extra))

    return call


# ---------------------------------------------------------------- causality_test

def _call_causality(fn, model):
    __tracebackhide__ = True
    return fn(model, 13, 10)  # the model itself is the function token_ids (B, T) -> logits (B, T, V)


def _causality_zoo() -> list[Specimen]:
    return [
        Specimen("tinycore's TransformerLM (causal)", lambda: _lm(), True),
        Specimen("a running-mean model (causal)", lambda: _PrefixMean(13, 8, 1), True),
        Specimen("a model whose every position sees the whole sequence", lambda: _Bidirectional(13, 8, 2), False),
        Specimen("a TransformerLM whose causal mask is off by one (position i sees i + 1)",
                 lambda: swap_in(_lm(seed=3), "attn", OffByOneMaskAttention), False),
        Specimen("a TransformerLM whose LayerNorm averages over the whole sequence",
                 lambda: swap_in(_lm(seed=4, norm="layernorm"), "norm", SequenceLayerNorm), False),
        Specimen("a running-mean model in which only position 0 sees token 1 (a leak far from the end)",
                 lambda: _PrefixMean(13, 8, 5, leak_from=1, leak_to=0, leak=1.0), False),
        Specimen("a running-mean model in which position 2 sees token 5 only faintly (1e-3 of its embedding)",
                 lambda: _PrefixMean(13, 8, 6, leak_from=5, leak_to=2, leak=1e-3), False),
        Specimen("tinycore's TransformerLM with learned positions (causal)", lambda: _lm(seed=7, positions="learned"),
                 True),
    ]


def causality_test(fn: Callable) -> None:
    """Check fn(model_fn, vocab_size, T) -> bool: True iff no logit at position t depends on a token after t."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _expect("causality_test", fn, _causality_zoo(),
            _call_causality,
            "change the token at every position j in turn (to a different id) and check that the logits at "
            "positions 0..j-1 stay the same, to a tight tolerance (a leak can be small); positions j and later "
            "may change.")


# ---------------------------------------------------------------- kv_cache_consistency_test

class _NoCacheReadAttention(MultiHeadSelfAttention):
    """A cached step that never reads the cache: the new tokens attend only to each other."""

    def forward(self, x, mask=None, token_positions=None, attn_bias=None, cache=None):
        if cache is not None:
            cache.append(*self.qkv(x, token_positions)[1:])  # keeps the cache's length right, but reads nothing
        return super().forward(x, mask, token_positions, attn_bias, None)


def _kv_zoo() -> list[Specimen]:
    return [
        Specimen("tinycore's TransformerLM with RoPE", lambda: _lm(seed=10), True),
        Specimen("tinycore's TransformerLM with learned positions", lambda: _lm(seed=11, positions="learned"), True),
        Specimen("tinycore's TransformerLM with grouped-query attention (1 key/value head)",
                 lambda: _lm(seed=12, num_kv_heads=1), True),
        Specimen("a TransformerLM whose cached steps number new tokens from 0 (right for the prompt, wrong after)",
                 lambda: swap_in(_lm(seed=13), "attn", CacheWithoutOffsetAttention), False),
        Specimen("a TransformerLM whose cached steps never read the cache",
                 lambda: swap_in(_lm(seed=14, positions="learned"), "attn", _NoCacheReadAttention), False),
    ]


def kv_cache_consistency_test(fn: Callable) -> None:
    """Check fn(model, token_ids) -> bool: True iff cached decoding gives the full forward's logits."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    token_ids = torch.randint(0, 13, (2, 9), generator=torch.Generator().manual_seed(0))  # (B, T)
    _expect("kv_cache_consistency_test", fn, _kv_zoo(),
            _call_with(token_ids),
            "feed a prompt of a few tokens into a fresh cache, then the remaining tokens ONE at a time, and compare "
            "every step's logits with the matching rows of one uncached forward over the whole sequence.")


# ---------------------------------------------------------------- attention_scale_test

class _NoScaleAttention(MultiHeadSelfAttention):
    def attend(self, q, k, v, mask=None, attn_bias=None):
        return super().attend(q * math.sqrt(self.d_head), k, v, mask, attn_bias)  # scores not divided at all


class _DivideByDhAttention(MultiHeadSelfAttention):
    def attend(self, q, k, v, mask=None, attn_bias=None):
        return super().attend(q / math.sqrt(self.d_head), k, v, mask, attn_bias)  # scores / Dh, not / sqrt(Dh)


class _FeatureMajorHeads(MultiHeadSelfAttention):
    """Heads taken as every H-th feature, (Dh H) instead of (H Dh), in q and k only."""

    def project(self, x, context):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.d_head, self.num_heads).permute(0, 3, 1, 2)  # (B, T, D) -> (B, H, T, Dh)
        k = self.k_proj(context).view(B, T, self.d_head, self.num_heads).permute(0, 3, 1, 2)
        v = split_heads(self.v_proj(context), self.num_heads)  # (B, T, D) -> (B, H, T, Dh)
        return q, k, v


def _attn(cls=MultiHeadSelfAttention, d_model=32, num_heads=4, seed=0, fused=True) -> MultiHeadSelfAttention:
    torch.manual_seed(seed)
    module = cls(d_model, num_heads, causal=True, fused=fused, dtype=torch.float64)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.5)  # large enough that a wrong scale changes the weights visibly
    return module


def _scale_zoo() -> list[Specimen]:
    return [
        Specimen("tinycore's MultiHeadSelfAttention (D=32, H=4)", lambda: _attn(), True),
        Specimen("tinycore's MultiHeadSelfAttention from scratch (D=24, H=3)",
                 lambda: _attn(d_model=24, num_heads=3, seed=1, fused=False), True),
        Specimen("an attention dividing the scores by sqrt(D) instead of sqrt(Dh) (D=32, H=4)",
                 lambda: _attn(SqrtDModelAttention, seed=2), False),
        Specimen("an attention that does not scale the scores at all (D=24, H=2)",
                 lambda: _attn(_NoScaleAttention, d_model=24, num_heads=2, seed=3), False),
        Specimen("an attention dividing the scores by Dh instead of sqrt(Dh) (D=32, H=2)",
                 lambda: _attn(_DivideByDhAttention, num_heads=2, seed=4), False),
        Specimen("an attention splitting q and k into heads feature-major, (Dh H) instead of (H Dh)",
                 lambda: _attn(_FeatureMajorHeads, seed=5), False),
        Specimen("tinycore's MultiHeadSelfAttention (D=16, H=8)", lambda: _attn(d_model=16, num_heads=8, seed=6), True),
    ]


def attention_scale_test(fn: Callable) -> None:
    """Check fn(attn) -> bool: True iff attn computes causal multi-head attention exactly as the oracle does."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _expect("attention_scale_test", fn, _scale_zoo(), _call_with(),
            "build the oracle from the module's own weights: project x with q_proj/k_proj/v_proj, split into "
            "attn.num_heads heads of D / H features (head-major), run F.scaled_dot_product_attention(..., "
            "is_causal=True), merge the heads, apply output_proj, and compare with attn(x) on an input with T != D.")
