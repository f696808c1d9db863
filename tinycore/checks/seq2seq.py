"""Checkers for chapter 13 (encoder-decoder models): teacher forcing's shifted input, cross-attention,
batched greedy decoding and one step of beam search.

The references are independent of tinycore.seq2seq: plain loops for shift_right, greedy decoding and
the beam step (every candidate scored and sorted), and PyTorch's own multi-head attention
(`F.multi_head_attention_forward`, with its opposite padding-mask polarity) for cross-attention.
Every case gives every dimension a different size (Tq != Tk above all).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .core import Case, Diagnosis, call_learner, check_function, compare, describe, fail, passed

__all__ = ["shift_right", "cross_attention", "greedy_decode", "beam_step"]


# ---------- shift_right: the decoder's input under teacher forcing ----------

def _shift_reference(targets, bos_id):
    rows = [[bos_id] + row[:-1] for row in targets.tolist()]  # BOS, then every target but the last
    return torch.tensor(rows, dtype=targets.dtype)


def _shift_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(130)
    cases = []
    for B, T, bos, n_pad in [(2, 5, 1, 0), (3, 8, 1, 3), (4, 3, 7, 1), (1, 6, 0, 2)]:
        targets = torch.randint(3, 20, (B, T), generator=gen)
        targets[:, T - 1 - n_pad] = 2  # EOS
        if n_pad:
            targets[:, T - n_pad:] = 0  # PAD after it
        cases.append(Case((targets, bos), f"targets (B={B}, T={T}) ending in EOS = 2{' + padding' if n_pad else ''}, "
                                          f"bos_id={bos}"))
    return cases


def shift_right(fn) -> None:
    """fn(targets (B, T) long, bos_id) -> (B, T) long: BOS followed by targets[:, :-1]."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "shift_right"

    def screen(got, want, case):
        __tracebackhide__ = True
        targets, bos = case.args
        if tuple(got.shape) == (targets.shape[0], targets.shape[1] + 1):
            raise fail(f"{name}'s output has shape {tuple(got.shape)}, expected {tuple(want.shape)}", case,
                       "you kept the last target token too: the decoder's input has the same length T as the targets, "
                       "because the prediction at position t is target t; drop the last target token.")
        if got.dtype.is_floating_point:
            raise fail(f"{name} returned a {got.dtype} tensor; token ids must stay integers ({targets.dtype})", case,
                       "build the BOS column with the targets' dtype, e.g. torch.full_like(targets[:, :1], bos_id).")
        return got

    check_function(
        name, fn, _shift_reference, _shift_cases(), rtol=0, atol=0, screen=screen,
        hint="position 0 of the decoder's input is BOS and position t > 0 is target t - 1: prepend a column of "
             "bos_id and drop the last column of the targets (concatenate along the token axis, dim=1).",
        diagnoses=[
            Diagnosis(lambda y, bos: torch.cat([y[:, 1:], torch.zeros_like(y[:, :1])], dim=1),
                      "you shifted left: the decoder would read the token it must predict. Shift right: BOS first."),
            Diagnosis(lambda y, bos: torch.roll(y, 1, dims=1),
                      "you rolled the targets, so the last token wrapped round to position 0; put BOS there instead."),
            Diagnosis(lambda y, bos: torch.cat([torch.full_like(y[:, :1], bos), y[:, 1:]], dim=1),
                      "you overwrote the first target with BOS instead of shifting: every target must move one "
                      "place right."),
            Diagnosis(lambda y, bos: torch.cat([y[:, 1:], torch.full_like(y[:, :1], bos)], dim=1),
                      "BOS goes at the start (position 0), and the targets move right, not left."),
        ],
    )


# ---------- cross_attention: queries from the decoder, keys and values from the memory ----------

def _torch_cross_attention(x, memory, w_q, w_k, w_v, w_o, num_heads, memory_mask):
    """PyTorch's multi-head attention; its key_padding_mask is True where a key must be IGNORED."""
    out, _ = F.multi_head_attention_forward(
        x.transpose(0, 1), memory.transpose(0, 1), memory.transpose(0, 1), x.shape[-1], num_heads, None, None,
        None, None, False, 0.0, w_o, None, training=False, key_padding_mask=~memory_mask, need_weights=False,
        use_separate_proj_weight=True, q_proj_weight=w_q, k_proj_weight=w_k, v_proj_weight=w_v)  # (T, B, D)
    return out.transpose(0, 1)  # (T, B, D) -> (B, T, D)


def _attend(x, memory, w_q, w_k, w_v, w_o, H, mask, *, scale=None, heads="major", causal=False, dim=-1,
            project_out=True, transpose_w=False):
    """Cross-attention with one chosen mistake, for the diagnoses. mask (B, S) True = real (or None)."""
    B, T, D = x.shape
    S = memory.shape[1]
    lin = (lambda t, w: t @ w) if transpose_w else (lambda t, w: t @ w.T)

    def split(t):
        n = t.shape[1]
        if heads == "major":
            return t.view(B, n, H, D // H).transpose(1, 2)  # (B, H, n, Dh)
        return t.view(B, n, D // H, H).permute(0, 3, 1, 2)  # interleaved

    q, k, v = split(lin(x, w_q)), split(lin(memory, w_k)), split(lin(memory, w_v))
    scores = q @ k.transpose(-2, -1) / (scale if scale is not None else math.sqrt(D // H))  # (B, H, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    if causal:
        scores = scores.masked_fill(~torch.ones(T, S, dtype=torch.bool).tril(), float("-inf"))
    out = scores.softmax(dim) @ v  # (B, H, T, Dh)
    out = out.transpose(1, 2).reshape(B, T, D) if heads == "major" else out.permute(0, 2, 3, 1).reshape(B, T, D)
    return lin(out, w_o) if project_out else out


def _cross_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(131)
    cases = []
    for B, T, S, D, H, scale, lengths in [(2, 5, 7, 12, 3, 1.0, [7, 4]), (3, 4, 9, 16, 4, 0.5, [9, 2, 6]),
                                          (1, 6, 3, 8, 1, 1.0, [3]), (4, 1, 5, 24, 6, 2.0, [5, 1, 3, 4])]:
        x = torch.randn(B, T, D, generator=gen, dtype=torch.float64) * scale
        memory = torch.randn(B, S, D, generator=gen, dtype=torch.float64) * scale
        w = [torch.randn(D, D, generator=gen, dtype=torch.float64) / math.sqrt(D) for _ in range(4)]
        mask = torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]  # (B, S): True = a real source token
        label = (f"x (B={B}, T={T}, D={D}), memory (B={B}, S={S}, D={D}), num_heads={H}, "
                 f"memory_mask (B, S) for source lengths {lengths}, values ~{scale:g}")
        cases.append(Case((x, memory, *w, H, mask), label))
    return cases


def cross_attention(fn) -> None:
    """fn(x (B, T, D), memory (B, S, D), w_q, w_k, w_v, w_o (D, D), num_heads, memory_mask (B, S)) -> (B, T, D)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    check_function(
        "cross_attention", fn, _torch_cross_attention, _cross_cases(), grad=True, rtol=1e-6, atol=1e-9,
        arg_names=("x", "memory", "w_q", "w_k", "w_v", "w_o", "num_heads", "memory_mask"),
        hint="queries from x, keys and values from memory (each t @ w.T, as nn.Linear stores (d_out, d_in)); split "
             "each into H heads of width Dh = D / H, head-major; scores (B, H, T, S) divided by sqrt(Dh); give the "
             "padding keys (memory_mask False) -inf; softmax over the source axis; merge the heads; then w_o.",
        diagnoses=[
            Diagnosis(lambda *a: _attend(*a, scale=math.sqrt(a[0].shape[-1])),
                      "you divided the scores by sqrt(D), the model width; the scale is 1/sqrt(Dh), the head width "
                      "D / H."),
            Diagnosis(lambda *a: _attend(*a[:-1], ~a[-1]),
                      "the mask's polarity is inverted: memory_mask is True at real source tokens, which may be "
                      "attended."),
            Diagnosis(lambda *a: _attend(*a[:-1], None),
                      "the output does not depend on memory_mask: padding keys must get a score of -inf. Reshape the "
                      "(B, S) mask to (B, 1, 1, S) so it broadcasts over heads and queries."),
            Diagnosis(lambda *a: _attend(*a, causal=True),
                      "you applied a causal mask: cross-attention is not causal, every target position may read the "
                      "whole source (only padding is hidden)."),
            Diagnosis(lambda *a: _attend(*a, project_out=False),
                      "you left out the output projection: multiply the merged heads by w_o (as t @ w_o.T)."),
            Diagnosis(lambda *a: _attend(*a, heads="interleaved"),
                      "the heads are interleaved: split the features as (H, Dh), so head h owns features "
                      "h*Dh..(h+1)*Dh-1."),
            Diagnosis(lambda *a: _attend(*a, dim=-2),
                      "you took the softmax over the queries; each query's weights over the source (dim=-1) sum "
                      "to one."),
            Diagnosis(lambda *a: _attend(*a, transpose_w=True),
                      "the weights are stored (d_out, d_in), as nn.Linear stores them: project with t @ w.T, "
                      "not t @ w."),
        ],
    )


# ---------- greedy_decode: a batch of rows, each stopping at its own EOS ----------

BOS, EOS, PAD, V = 1, 2, 0, 9


def _plans():
    """Per source row: the tokens the toy model prefers at each step (EOS where that row should stop)."""
    gen = torch.Generator().manual_seed(132)
    plans = torch.randint(3, V, (8, 12), generator=gen)  # (rows, steps): tokens 3..8, never special
    for row, stop in enumerate([2, 5, None, 0, 3, 7, None, 1]):  # None: never stops (cut at max_len)
        if stop is not None:
            plans[row, stop] = EOS
    return plans


def _toy_next_logits(plans, noise):
    """next_logits(src (B, 1), prefixes (B, t)) -> (B, V): a fixed model that prefers plans[src, t - 1]."""

    def next_logits(src, prefixes):
        rows, t = src[:, 0], prefixes.shape[1] - 1
        if not 0 <= t < plans.shape[1]:
            raise IndexError(f"the toy model was asked for step {t}; its max_len is at most {plans.shape[1]}")
        logits = noise[rows, t].clone()  # (B, V)
        logits[torch.arange(len(rows)), plans[rows, t]] += 5.0  # the planned token wins
        return logits

    return next_logits


def _greedy_reference(next_logits, src, max_len, bos_id, eos_id, pad_id):
    """One row at a time, the definition written out; rows are padded to the longest."""
    rows = []
    for b in range(src.shape[0]):
        prefix = [bos_id]
        while len(prefix) <= max_len and prefix[-1] != eos_id:
            prefix.append(int(next_logits(src[b:b + 1], torch.tensor([prefix])).argmax(-1)))
        rows.append(prefix[1:])
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)


def _greedy_cases() -> list[tuple[Case, object]]:
    plans = _plans()
    noise = torch.randn(8, 12, V, generator=torch.Generator().manual_seed(133))
    noise[..., [PAD, BOS]] = -10.0  # the toy model never prefers PAD or BOS
    model = _toy_next_logits(plans, noise)
    cases = []
    for rows, max_len, what in [([0, 1, 3], 10, "every row ends with EOS (after 3, 6 and 1 tokens)"),
                                ([2, 4, 0, 6], 9, "two rows never emit EOS: cut at max_len"),
                                ([5, 7], 6, "one row hits max_len before its EOS"),
                                ([3], 4, "one row whose first token is EOS")]:
        src = torch.tensor(rows)[:, None]  # (B, 1)
        label = f"a toy model, B={len(rows)}, max_len={max_len}: {what}"
        cases.append(Case((model, src, max_len, BOS, EOS, PAD), label))
    return cases


def _greedy_wrong(next_logits, src, max_len, bos_id, eos_id, pad_id, *, pad_after_eos=True, keep_eos=True):
    out = _greedy_reference(next_logits, src, max_len, bos_id, eos_id, pad_id)
    if not pad_after_eos:  # rows keep generating after their EOS, until every row has had one
        full, ended = torch.full((src.shape[0], 1), bos_id), torch.zeros(src.shape[0], dtype=torch.bool)
        while full.shape[1] <= max_len and not ended.all():
            token = next_logits(src, full).argmax(-1)  # (B,)
            ended |= token == eos_id
            full = torch.cat([full, token[:, None]], dim=1)
        return full[:, 1:]
    return out if keep_eos else out.masked_fill(out == eos_id, pad_id)


def greedy_decode(fn) -> None:
    """fn(next_logits, src (B, S), max_len, bos_id, eos_id, pad_id) -> (B, L <= max_len) long."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "greedy_decode"

    def screen(got, want, case):
        __tracebackhide__ = True
        B, max_len, bos = case.args[1].shape[0], case.args[2], case.args[3]
        if got.shape[0] == B and got.ndim == 2 and got.shape[1] == want.shape[1] + 1 and (got[:, 0] == bos).all():
            raise fail(f"{name}'s output starts with BOS", case, "BOS is the decoder's first input, not an output: "
                       "return the generated tokens only (drop column 0).")
        if got.ndim == 2 and got.shape[0] == B and got.shape[1] > want.shape[1]:
            raise fail(f"{name}'s output has shape {tuple(got.shape)}, expected {tuple(want.shape)}", case,
                       f"every row had emitted EOS after {want.shape[1]} tokens, but you went on to {got.shape[1]}: "
                       "stop as soon as all rows have finished.")
        if got.ndim == 2 and got.shape[0] == B and got.shape[1] < want.shape[1]:
            raise fail(f"{name}'s output has shape {tuple(got.shape)}, expected {tuple(want.shape)}", case,
                       f"you stopped too early: decode until every row has emitted EOS or max_len={max_len} tokens "
                       "are out, not until the first row ends.")
        return got

    check_function(
        name, fn, _greedy_reference, _greedy_cases(), rtol=0, atol=0, screen=screen,
        hint="start every row with [BOS]; at each step append the argmax of next_logits(src, prefixes) to every row; "
             "a row that has emitted EOS gets pad_id from then on; stop when every row has ended or after max_len "
             "tokens; return the tokens after BOS.",
        diagnoses=[
            Diagnosis(lambda *a: _greedy_wrong(*a, pad_after_eos=False),
                      "your rows go on after their EOS: once a row has emitted EOS, fill it with pad_id."),
            Diagnosis(lambda *a: _greedy_wrong(*a, keep_eos=False),
                      "the EOS tokens are missing: keep each row's EOS (it says the output is complete), pad "
                      "after it."),
        ],
    )


# ---------- beam_step: the best beam_width one-token extensions of all beams together ----------

def _beam_reference(scores, log_probs, beam_width):
    """Every (beam, token) candidate scored, sorted best first, the first beam_width kept."""
    candidates = [(float(scores[b] + log_probs[b, t]), b, t)
                  for b in range(log_probs.shape[0]) for t in range(log_probs.shape[1])]
    best = sorted(candidates, key=lambda c: -c[0])[:beam_width]
    return (torch.tensor([c[0] for c in best], dtype=scores.dtype), torch.tensor([c[1] for c in best]),
            torch.tensor([c[2] for c in best]))


def _beam_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(134)
    cases = []
    for K, V_, width, what in [(1, 7, 3, "the first step: one beam (BOS)"), (3, 10, 3, "three beams"),
                               (4, 6, 2, "four beams narrowed to two"), (2, 5, 4, "two beams widened to four")]:
        scores = -3 * torch.rand(K, generator=gen, dtype=torch.float64)  # (K,): running log-probabilities
        if K == 1:
            scores.zero_()  # the first step: the beam holds BOS alone, log p = 0
        log_probs = torch.randn(K, V_, generator=gen, dtype=torch.float64).mul(2).log_softmax(-1)  # (K, V)
        cases.append(Case((scores, log_probs, width),
                          f"scores (K={K},), log_probs (K={K}, V={V_}), beam_width={width}: {what}"))
    return cases


def _beam_mistakes(scores, log_probs, beam_width) -> list[tuple[tuple[torch.Tensor, torch.Tensor], str]]:
    """(beam_index, token) that known mistakes produce, each with the hint that names it."""
    K, V_ = log_probs.shape
    total = scores[:, None] + log_probs  # (K, V)

    def pick(table, largest=True):
        i = table.flatten().topk(min(beam_width, table.numel()), largest=largest).indices
        return i // V_, i % V_

    own_best = torch.full_like(total, float("-inf")).scatter(1, total.argmax(1, keepdim=True),
                                                              total.amax(1, keepdim=True))  # one per beam
    flat = total.flatten().topk(beam_width).indices
    return [
        (pick(log_probs),
         "you ranked the next token alone: a beam's score is its running total, scores[b] + log_probs[b, t]."),
        (pick(scores[:, None] * log_probs),
         "log-probabilities add (probabilities multiply): score scores[b] + log_probs[b, t]."),
        (pick(total, largest=False), "you kept the worst candidates: take the largest scores, best first."),
        (pick(own_best), "you extended each beam only by its own best token: compare all K * V candidates together, "
                         "so one good beam may take several places and a poor one none."),
        ((flat % K, flat // K), "you unflattened the index with the wrong size: flat index i of a (K, V) table is "
                                "beam i // V and token i % V."),
    ]


def beam_step(fn) -> None:
    """fn(scores (K,), log_probs (K, V), beam_width) -> (new_scores, beam_index, token), (beam_width,) each."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "beam_step"
    hint = ("score every candidate as scores[b] + log_probs[b, t] (a (K, V) table), flatten it, take the beam_width "
            "largest (sorted, best first), and turn each flat index i back into beam i // V and token i % V.")
    cases = _beam_cases()
    for case in cases:
        want = _beam_reference(*case.args)
        got = call_learner(fn, name, case, hint)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise fail(f"{name} should return three tensors (new_scores, beam_index, token), got {describe(got)}",
                       case, "return a tuple of three tensors, each of shape (beam_width,).")
        if all(isinstance(g, torch.Tensor) and g.shape == w.shape for g, w in zip(got, want)):
            chosen = (got[1].long(), got[2].long())
            if not (torch.equal(chosen[0], want[1]) and torch.equal(chosen[1], want[2])):
                for (beams, tokens), message in _beam_mistakes(*case.args):
                    if torch.equal(chosen[0], beams) and torch.equal(chosen[1], tokens):
                        raise fail(f"{name} kept the wrong candidates", case, message)
        for what, g, w in zip(("new_scores", "beam_index", "token"), got, want):
            compare(name, g, w, case, rtol=1e-9, atol=1e-12, hint=hint, what=what)
    passed(name, len(cases))
