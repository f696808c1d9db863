"""Checkers for chapter 12 (decoding with a KV cache, nucleus sampling).

- `cached_attention_step`: one attention step with a KV cache, new positions appended, queries masked
  with the causal mask offset by the cache length. Oracle: `F.scaled_dot_product_attention` with a
  mask written from its definition (query i, at position S + i, may attend key j when j <= S + i).
- `top_p_filter`: nucleus filtering. Oracle: a plain Python loop over each row's tokens in order of
  probability (float64), independent of tinycore.top_p_filter (a test holds the two equal).
- `cached_greedy_decode`: the generation loop with a cache. Oracle: greedy decoding that re-runs the
  whole sequence every step, without a cache, on small float64 models; the learner's calls to the
  model are recorded, so an answer that never uses the cache, or feeds a token twice, is named.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .core import (Case, CheckFailed, Diagnosis, call_learner, check_function, compare, compare_grads, describe, fail,
                   passed, require_callable)

__all__ = ["cached_attention_step", "top_p_filter", "cached_greedy_decode"]


# ---------- cached_attention_step ----------

def _offset_causal(t: int, s: int) -> torch.Tensor:
    """(t, s + t) bool: new query i sits at position s + i and may attend keys 0 .. s + i."""
    return torch.tensor([[j <= s + i for j in range(s + t)] for i in range(t)], dtype=torch.bool)


def _step_reference(q, k_cache, v_cache, k_new, v_new):
    k_all = torch.cat([k_cache, k_new], dim=2)  # (B, H, S + t, Dh)
    v_all = torch.cat([v_cache, v_new], dim=2)
    mask = _offset_causal(q.shape[2], k_cache.shape[2])
    return F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask), k_all, v_all


def _step_wrong(q, k_cache, v_cache, k_new, v_new, *, mask="offset", prepend=False, cached_only=False):
    """The attention output with one known mistake, for diagnoses."""
    t = q.shape[2]
    k_all = torch.cat([k_new, k_cache] if prepend else [k_cache, k_new], dim=2)
    v_all = torch.cat([v_new, v_cache] if prepend else [v_cache, v_new], dim=2)
    if cached_only:
        k_all, v_all = k_cache, v_cache
    if mask == "none":
        return F.scaled_dot_product_attention(q, k_all, v_all)
    if mask == "top-left":  # F.scaled_dot_product_attention's is_causal=True when Tq != Tk
        return F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=torch.ones(t, k_all.shape[2]).tril().bool())
    return F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=_offset_causal(t, k_all.shape[2] - t))


def _step_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(120)
    cases = []
    for B, H, S, t, Dh, scale, what in [
        (2, 3, 5, 1, 4, 1.0, "one new token (a decoding step)"),
        (3, 2, 6, 4, 8, 1.0, "4 new tokens at once"),
        (2, 4, 0, 5, 3, 1.0, "an empty cache: the prompt itself"),
        (1, 5, 9, 3, 6, 3.0, "3 new tokens, q and k ~3"),
    ]:
        q = torch.randn(B, H, t, Dh, generator=gen) * scale
        k_cache, k_new = (torch.randn(B, H, n, Dh, generator=gen) * scale for n in (S, t))
        v_cache, v_new = (torch.randn(B, H, n, Dh, generator=gen) for n in (S, t))
        label = (f"q_new and k_new, v_new (B={B}, H={H}, t={t}, Dh={Dh}), k_cache and v_cache (B={B}, H={H}, S={S}, "
                 f"Dh={Dh}): {what}")
        cases.append(Case((q, k_cache, v_cache, k_new, v_new), label))
    return cases


def cached_attention_step(fn) -> None:
    """fn(q_new (B,H,t,Dh), k_cache, v_cache (B,H,S,Dh), k_new, v_new (B,H,t,Dh)) -> (out (B,H,t,Dh), k_all, v_all)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "cached_attention_step"
    require_callable(fn, name)
    hint = ("append the new keys and values after the cached ones along the token axis (dim 2), then let the new "
            "queries attend over all S + t keys, scaled by 1/sqrt(Dh); new query i sits at position S + i, so it "
            "may see keys 0 .. S + i.")
    names = ("q_new", "k_cache", "v_cache", "k_new", "v_new")
    diagnoses = [
        Diagnosis(lambda *a: _step_wrong(*a, mask="none"),
                  "there is no causal mask: with several new tokens, an earlier one must not see the later ones "
                  "(with a single new token no mask is needed, which is why the first case passed)."),
        Diagnosis(lambda *a: _step_wrong(*a, mask="top-left"),
                  "your causal mask is not offset by the cache length S: new query i sits at position S + i, so it "
                  "may see keys 0 .. S + i, i.e. tril(diagonal=S) of a (t, S + t) matrix. (This is what "
                  "F.scaled_dot_product_attention's is_causal=True does when there are fewer queries than keys.)"),
        Diagnosis(lambda *a: _step_wrong(*a, prepend=True),
                  "you put the new positions before the cached ones: the cache holds positions 0 .. S-1, and the "
                  "new keys and values come after them."),
        Diagnosis(lambda *a: _step_wrong(*a, cached_only=True),
                  "you attended over the cached keys only: the new tokens' own keys and values belong in the "
                  "attention too (a token may attend to itself)."),
    ]
    for case in _step_cases():
        ref_args = tuple(a.detach().clone().requires_grad_(True) for a in case.args)
        learner_args = tuple(a.detach().clone().requires_grad_(True) for a in case.args)
        want = _step_reference(*ref_args)
        got = call_learner(fn, name, Case(learner_args, case.label), hint)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            what = f"{len(got)} values" if isinstance(got, (tuple, list)) else describe(got)
            raise fail(f"{name} returned {what}; it should return three tensors: (out, k_all, v_all)", case,
                       "return the attention output and the grown cache, e.g. `return out, k_all, v_all`.")
        out, k_all, v_all = got
        for what, g, w in (("k_all", k_all, want[1]), ("v_all", v_all, want[2])):
            if isinstance(g, torch.Tensor) and g.shape != w.shape and g.ndim == 4 and g.numel() == w.numel():
                raise fail(f"{name}'s {what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}", case,
                           "the right number of entries in the wrong layout: append along the token axis, dim 2 "
                           "of (B, H, T, Dh), and keep that layout.")
            compare(name, g, w, case, rtol=1e-5, atol=1e-6, what=what, hint=(
                f"{what} is the cache followed by the new positions: (B, H, S, Dh) and (B, H, t, Dh) give "
                "(B, H, S + t, Dh)."), diagnoses=[Diagnosis(
                    lambda q, kc, vc, kn, vn, _n=what: torch.cat([kn, kc] if _n == "k_all" else [vn, vc], dim=2),
                    "you put the new positions before the cached ones: they come after positions 0 .. S-1.")])
        compare(name, out, want[0], case, rtol=1e-4, atol=1e-5, what="attention output", hint=hint, diagnoses=diagnoses)
        # gradients with respect to every input that holds numbers (an empty cache has none to compare)
        nonempty = lambda args: tuple(a if a.numel() else None for a in args)  # noqa: E731
        compare_grads(name, out, want[0], nonempty(learner_args), nonempty(ref_args), case, 1e-4, 1e-5, names)
    passed(name, len(_step_cases()), grad=True)


# ---------- top_p_filter ----------

def _nucleus_reference(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Row by row: walk the tokens from most to least likely, keeping each while the mass before it is < p."""
    probs = torch.softmax(logits.double(), dim=-1).reshape(-1, logits.shape[-1])  # (rows, V)
    keep = torch.zeros_like(probs, dtype=torch.bool)
    for r in range(probs.shape[0]):
        before = 0.0
        for token in sorted(range(probs.shape[1]), key=lambda j: -probs[r, j].item()):
            if before >= p:
                break
            keep[r, token] = True
            before += probs[r, token].item()
    return logits.masked_fill(~keep.reshape(logits.shape), float("-inf"))


def _keep_sorted(logits, p, rule):
    """Nucleus filtering with a chosen rule on the sorted probabilities, for diagnoses."""
    descending = rule != "ascending"
    sorted_logits, order = logits.double().sort(dim=-1, descending=descending)
    probs = sorted_logits.softmax(dim=-1)
    cum = probs.cumsum(dim=-1)
    if rule == "crossing":  # the token that takes the total past p is dropped
        keep = cum < p
    elif rule == "logits":  # cumulative sum of logits instead of probabilities
        keep = sorted_logits.cumsum(dim=-1) - sorted_logits < p
    else:
        keep = cum - probs < p
    if rule == "top-dropped":  # right, except that a top token holding more than p is dropped (and the row with it)
        keep = keep & (cum[..., :1] < p)
    if rule == "unsorted":  # the sorted mask applied to the logits in vocabulary order
        return logits.masked_fill(~keep, float("-inf"))
    keep = keep.scatter(-1, order, keep)
    return logits.masked_fill(~keep, float("-inf"))


_KEEP_THE_TOP = ("the most likely token must always stay, however large it is compared with p (a row of -inf has no "
                 "probabilities: softmax gives NaN). A token is dropped only when the tokens ranked above it "
                 "already hold p.")

_NUCLEUS_MISTAKES = [  # (rule for _keep_sorted, what the learner did)
    ("crossing", "you dropped the token whose probability takes the total past p (and so every token of a row whose "
                 "top token alone holds more than p): the kept set must *reach* p, so keep a token whenever the mass "
                 "of the tokens ranked above it is still below p (cumulative sum minus its own probability)."),
    ("top-dropped", "you dropped every token of a row whose most likely token alone holds more than p: that token "
                    "must always stay (a row of -inf has no probabilities: softmax gives NaN)."),
    ("ascending", "you kept the least likely tokens: sort the probabilities in descending order."),
    ("unsorted", "you applied the keep/drop decisions, made in sorted order, to the logits in vocabulary order: map "
                 "them back with the sort's indices (scatter, or index by the inverse order)."),
    ("logits", "you accumulated logits: the nucleus is defined by probabilities (softmax first)."),
]


def _nucleus_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(121)
    cases = []
    for shape, p, scale, dtype, what in [
        ((2, 3, 17), 0.5, 2.0, torch.float32, "logits ~2"),
        ((4, 11), 0.9, 1.0, torch.float32, "logits ~1"),
        ((5, 13), 0.7, 4.0, torch.float32, "peaked rows, four whose top token alone holds more than p"),
        ((3, 20), 0.9, 1.5, torch.float64, "float64"),
        ((29,), 0.75, 2.0, torch.float32, "a single row of logits, no batch axis"),
    ]:
        logits = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
        cases.append(Case((logits, p), f"logits {shape} ({what}), p = {p}"))
    return cases


def top_p_filter(fn) -> None:
    """fn(logits (..., V), p) -> (..., V): outside the smallest set of most likely tokens whose mass reaches p, -inf."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "top_p_filter"

    def screen(got, want, case):
        __tracebackhide__ = True
        if got.shape != want.shape or got.dtype != want.dtype:
            return got  # compare() explains shapes and dtypes
        logits, p = case.args
        changed = (got != logits) & torch.isfinite(got)
        if changed.any():
            raise fail(f"{name} changed logits without setting them to -inf (got e.g. "
                       f"{got[changed][0].item():.4g} where the logit was {logits[changed][0].item():.4g})",
                       case, "leave the kept logits untouched and set the dropped ones to float('-inf'): "
                             "exp(-inf) = 0, so they get no probability (a logit of 0 still has some).")
        kept_got, kept_want = torch.isfinite(got), torch.isfinite(want)
        if torch.equal(kept_got, kept_want):
            return got
        for rule, message in _NUCLEUS_MISTAKES:
            if torch.equal(kept_got, torch.isfinite(_keep_sorted(logits, p, rule))):
                raise fail(f"{name} kept {int(kept_got.sum())} tokens in all, the reference {int(kept_want.sum())}",
                           case, message)
        empty = ~kept_got.any(dim=-1)
        if empty.any():
            row = tuple(int(i) for i in empty.nonzero()[0]) if empty.ndim else ()
            raise fail(f"{name} dropped every token of row {row}", case, _KEEP_THE_TOP)
        if kept_got.all():
            raise fail(f"{name} kept every token: nothing was filtered", case,
                       "set the logits of the tokens outside the nucleus to -inf.")
        row = tuple(int(i) for i in (kept_got != kept_want).nonzero()[0][:-1])
        raise fail(f"{name} kept a different set of tokens: in row {row}, {int(kept_got[row].sum())} kept, "
                   f"expected {int(kept_want[row].sum())}", case,
                   "per row: sort the probabilities (softmax of the logits) from largest to smallest, keep a "
                   "token while the mass of the tokens before it is below p, and map the decision back to "
                   "vocabulary order.")

    check_function(
        name, fn, _nucleus_reference, _nucleus_cases(), rtol=0.0, atol=0.0, screen=screen,
        hint="keep the kept logits unchanged and set the others to -inf, in the input's shape and dtype.",
    )


# ---------- cached_greedy_decode ----------

class _RecordingLM(nn.Module):
    """The model handed to the learner: a TransformerLM that records how it is called."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.calls: list[tuple[int, object, int]] = []  # (tokens fed, the cache object or None, cache length before)

    @property
    def config(self):
        return self.model.config

    def make_cache(self, batch_size: int, max_len: int | None = None):
        __tracebackhide__ = True
        return self.model.make_cache(batch_size, max_len)

    def forward(self, token_ids, cache=None):
        __tracebackhide__ = True
        shape = tuple(token_ids.shape) if isinstance(token_ids, torch.Tensor) else ()
        self.calls.append((shape[-1] if shape else 0, cache, 0 if cache is None else cache.length))
        return self.model(token_ids, cache=cache)


def _greedy_reference(model: nn.Module, token_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding the slow way: the whole sequence through the model at every step, no cache."""
    out = token_ids
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = model(out)[:, -1].argmax(dim=-1)  # (B, T, V) -> (B,)
            out = torch.cat([out, next_id[:, None]], dim=1)  # (B, T) -> (B, T + 1)
    return out


def _decode_cases():
    """(model, prompt, max_new_tokens, label): small float64 models with sharp logits, so argmax has no near-ties."""
    from ..lm import LMConfig, TransformerLM, gpt_config

    cases = []
    for seed, config, B, T, N, what in [
        (0, LMConfig(23, 16, 24, 2, 3, 40), 2, 5, 7, "LLaMA-style"),
        (1, gpt_config(19, 12, 20, 3, 4), 3, 1, 9, "GPT-style, learned positions"),
        (2, LMConfig(29, 20, 32, 2, 4, 56, num_kv_heads=1), 1, 8, 4, "multi-query attention"),
    ]:
        torch.manual_seed(seed)
        model = TransformerLM.from_config(config, dtype=torch.float64).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 2:
                    p.normal_(0.0, 0.5)  # sharper than the training init: well separated logits
        prompt = torch.randint(0, config.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))
        label = (f"a {what} model (vocab {config.vocab_size}, context {config.context_length}), prompt (B={B}, T={T}), "
                 f"max_new_tokens={N}")
        cases.append((model, prompt, N, label))
    return cases


def _misuse(calls, prompt_len: int, new: int) -> str | None:
    """What was wrong with how the model was called, if anything."""
    if not calls:
        return "you never called the model"
    if all(cache is None for _, cache, _ in calls):
        return (f"you called the model {len(calls)} times without a cache, re-running the whole sequence each "
                "time: that gives the right tokens the slow way. Make one cache with model.make_cache(B) and "
                "pass it as model(ids, cache=cache)")
    for i, (n, cache, _) in enumerate(calls):
        if cache is None:
            return f"call {i + 1} to the model had no cache: pass the same cache to every call"
        if cache is not calls[0][1]:
            return (f"call {i + 1} used a different cache from call 1: a new cache has forgotten the keys and "
                    "values of the earlier positions. Make the cache once, before the loop")
    for i, (n, _, held) in enumerate(calls):
        if i > 0 and held > 0 and n == held + 1:
            return (f"call {i + 1} fed {n} tokens to a cache already holding {held}: you fed the whole sequence "
                    "again. The cache remembers the earlier positions: after the prompt, feed only the newest token")
    fed = sum(n for n, _, _ in calls)
    if fed > prompt_len + new:
        return (f"the model processed {fed} tokens for a prompt of {prompt_len} and {new} new ones: some tokens "
                "went through it twice. Feed the prompt once, then each new token once")
    return None


def cached_greedy_decode(fn) -> None:
    """fn(model, token_ids (B, T), max_new_tokens) -> (B, T + max_new_tokens), greedy, with one KV cache."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "cached_greedy_decode"
    require_callable(fn, name)
    hint = ("make one cache (model.make_cache(B)); run the whole prompt through model(ids, cache=cache) once; then, "
            "max_new_tokens times: take the argmax of the last position's logits, append it to the output, and feed "
            "just that token (shape (B, 1)) with the same cache.")
    cases = _decode_cases()
    for model, prompt, new, label in cases:
        recorder = _RecordingLM(model)
        case = Case((recorder, prompt.clone(), new), label)
        want = _greedy_reference(model, prompt, new)
        try:
            got = call_learner(fn, name, case, hint)
        except CheckFailed as err:
            problem = _misuse(recorder.calls, prompt.shape[1], new)
            if problem:
                raise fail(f"{name}: {problem}.", case, hint) from err
            raise
        if not isinstance(got, torch.Tensor):
            raise fail(f"{name} returned {describe(got)}; it should return a tensor of token ids", case, hint)
        if got.shape == (prompt.shape[0], new):
            raise fail(f"{name} returned only the {new} new tokens, shape {tuple(got.shape)}", case,
                       f"return the prompt followed by the new tokens, shape {tuple(want.shape)}, as generate does.")
        if got.shape != want.shape:
            raise fail(f"{name} returned shape {tuple(got.shape)}, expected {tuple(want.shape)}", case,
                       "generate exactly max_new_tokens tokens and return them after the prompt: "
                       "(B, T + max_new_tokens).")
        if got.dtype != torch.long:
            raise fail(f"{name} returned dtype {got.dtype}; token ids are torch.long", case,
                       "argmax returns long ids; keep them as they are.")
        problem = _misuse(recorder.calls, prompt.shape[1], new)
        if problem:
            raise fail(f"{name}: {problem}.", case, hint)
        if not torch.equal(got[:, :prompt.shape[1]], prompt):
            raise fail(f"{name}'s output does not start with the prompt", case,
                       "return torch.cat of the prompt and the new tokens along dim 1.")
        if not torch.equal(got, want):
            fed = sum(n for n, _, _ in recorder.calls)
            if fed < prompt.shape[1] + new - 1:
                raise fail(f"{name}: only {fed} tokens went through the model for a prompt of {prompt.shape[1]} and "
                           f"{new} new ones, so some never reached the cache", case,
                           "feed the whole prompt first (one call), then each new token but the last.")
            row, col = (int(i) for i in (got != want).nonzero()[0])
            first = col - prompt.shape[1]
            raise fail(f"{name}'s new token {first} of row {row} is {int(got[row, col])}, greedy decoding gives "
                       f"{int(want[row, col])}", case,
                       "each new token is the argmax of the logits of the *last* position ([:, -1]), and the cache "
                       "must see every token exactly once, in order." if first == 0 else hint)
    passed(name, len(cases))
