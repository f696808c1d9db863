"""Checkers for chapter 10 (encoder-only models): the padding mask, BERT's masking, the masked-LM loss.

The references are plain loops over the definitions, independent of `tinycore.encoder`. `mask_tokens`
is random, so its checker tests structure exactly (shapes, dtypes, untouched positions, the generator
is the only source of randomness) and proportions statistically, with bounds five standard deviations
wide: a correct answer fails with a probability below one in a million.
"""

from __future__ import annotations

import math

import torch

from .core import Case, Diagnosis, call_learner, check_function, describe, fail, passed

__all__ = ["padding_mask", "mask_tokens", "masked_lm_loss"]


# ---------- padding_mask: lengths (B,) -> (B, 1, 1, T) bool, True = real token ----------

def _padding_reference(lengths, max_len):
    rows = [[t < int(n) for t in range(max_len)] for n in lengths]
    return torch.tensor(rows, dtype=torch.bool).view(len(rows), 1, 1, max_len)  # (B, T) -> (B, 1, 1, T)


def padding_mask(fn) -> None:
    """fn(lengths (B,) long, max_len) -> (B, 1, 1, max_len) bool, True where position t < lengths[b]."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "padding_mask"
    cases = [Case((torch.tensor(lengths), t), f"lengths {lengths}, max_len={t}")
             for lengths, t in [([3, 5, 1, 4], 5), ([2, 7, 6], 9), ([1], 4), ([6, 2, 6, 3, 1, 5], 6)]]

    def screen(got, want, case):
        __tracebackhide__ = True
        B, T = want.shape[0], want.shape[-1]
        shape_hints = {
            (B, T): "that is the (B, T) mask of real tokens; attention needs it as (B, 1, 1, T), one row of keys that "
                    "broadcasts over the heads and the queries: add the two axes with [:, None, None, :].",
            (B, 1, T, 1): "that is (B, 1, T, 1), a mask over the *queries*; padding must be hidden as a key, so the "
                          "T axis goes last: (B, 1, 1, T).",
            (B, T, 1, 1): "the T axis must be the last one, the keys' axis: (B, 1, 1, T).",
        }
        if tuple(got.shape) != tuple(want.shape) and tuple(got.shape) in shape_hints:
            raise fail(f"{name}'s output has shape {tuple(got.shape)}, expected {tuple(want.shape)}", case,
                       shape_hints[tuple(got.shape)])
        if got.dtype != torch.bool:
            raise fail(f"{name} returned a {got.dtype} tensor; it should be torch.bool (True = real token, may be "
                       "attended to)", case, "build it from a comparison such as positions < lengths; a comparison "
                       "gives a bool tensor.")
        return got

    check_function(
        name, fn, _padding_reference, cases, rtol=0, atol=0, screen=screen,
        hint="position t of row b is a real token exactly when t < lengths[b]: compare a (1, T) row of positions "
             "with a (B, 1) column of lengths, then add the head and query axes.",
        diagnoses=[
            Diagnosis(lambda n, t: ~_padding_reference(n, t),
                      "the polarity is inverted: here True marks a real token that may be attended to (as in "
                      "F.scaled_dot_product_attention). PyTorch's src_key_padding_mask is the opposite, "
                      "True = padding."),
            Diagnosis(lambda n, t: _padding_reference(n + 1, t),
                      "off by one: a row of length n has real tokens at positions 0 .. n - 1, so use t < n, "
                      "not t <= n."),
            Diagnosis(lambda n, t: _padding_reference(n - 1, t),
                      "off by one: a row of length n has n real tokens, positions 0 .. n - 1; you kept one too few."),
            Diagnosis(lambda n, t: _padding_reference(n, t).flip(-1),
                      "the real tokens come first and the padding after them (right padding), not the other "
                      "way round."),
        ],
    )


# ---------- mask_tokens: BERT's 80/10/10 corruption ----------

def _within(count: int, n: int, p: float) -> bool:
    """Is count a plausible Binomial(n, p) draw? (within 5 standard deviations, at least +-2)"""
    return abs(count - n * p) <= max(5 * math.sqrt(n * p * (1 - p)), 2)


def _mask_case(seed, B, T, V, extra, p) -> Case:
    ids = torch.randint(V, (B, T), generator=torch.Generator().manual_seed(100 + seed))
    mask_id = V + extra  # ids V .. V + extra - 1 stand for other special tokens: never a random replacement
    label = f"token_ids ({B}, {T}) in [0, {V}), mask_id={mask_id}, vocab_size={V}, mask_prob={p}"
    return Case((ids, mask_id, V), label, {"mask_prob": p})


def _run_mask_tokens(fn, case: Case, seed: int, hint: str):
    __tracebackhide__ = True
    ids = case.args[0]
    args = (ids.clone(), *case.args[1:], torch.Generator().manual_seed(seed))
    out = call_learner(fn, "mask_tokens", Case(args, case.label, case.kwargs), hint)
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not all(isinstance(t, torch.Tensor) for t in out):
        raise fail(f"mask_tokens returned {describe(out)}; it should return a pair (inputs, is_masked) of tensors",
                   case, "return inputs, is_masked")
    if not torch.equal(args[0], ids):
        raise fail("mask_tokens changed token_ids in place; the caller still needs the originals as targets", case,
                   "work on a copy (token_ids.clone(), or torch.where, which makes a new tensor).")
    inputs, is_masked = out
    for what, t, dtype in (("inputs", inputs, ids.dtype), ("is_masked", is_masked, torch.bool)):
        if tuple(t.shape) != tuple(ids.shape):
            raise fail(f"mask_tokens: {what} has shape {tuple(t.shape)}, expected token_ids' shape {tuple(ids.shape)}",
                       case, "keep the (B, T) layout: one decision per position.")
        if t.dtype != dtype:
            raise fail(f"mask_tokens: {what} has dtype {t.dtype}, expected {dtype}", case,
                       "inputs are token ids like token_ids; is_masked is a bool mask (True = chosen for the loss).")
    return inputs, is_masked


def mask_tokens(fn) -> None:
    """fn(token_ids (B, T), mask_id, vocab_size, generator, mask_prob=0.15) -> (inputs, is_masked), (B, T) each."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    hint = ("choose each position with probability mask_prob (torch.rand(..., generator=generator) < mask_prob); "
            "draw one more uniform number per position to decide: below 0.8 -> mask_id, 0.8 to 0.9 -> a random id "
            "from torch.randint(vocab_size, ..., generator=generator), otherwise keep the token.")
    cases = [_mask_case(0, 128, 256, 20, 0, 0.15), _mask_case(1, 96, 200, 7, 3, 0.4)]
    for i, case in enumerate(cases):
        ids, mask_id, vocab_size = case.args
        p = case.kwargs["mask_prob"]
        inputs, is_masked = _run_mask_tokens(fn, case, seed=i, hint=hint)
        if not torch.equal(inputs[~is_masked], ids[~is_masked]):
            raise fail("mask_tokens changed positions that is_masked says were not chosen", case,
                       "only the chosen positions may change; all the others keep their token.")
        n, chosen = ids.numel(), int(is_masked.sum())
        if not _within(chosen, n, p):
            raise fail(f"mask_tokens chose {chosen} of {n} positions ({chosen / n:.3f}); expected about "
                       f"mask_prob = {p}", case,
                       "is_masked should hold every chosen position, including the 10% that keep their token and "
                       "the 10% replaced by a random token; use the mask_prob argument, not a fixed 0.15.")
        T = ids.shape[1]
        for part, cols in (("first", slice(0, T // 4)), ("last", slice(T - T // 4, T))):
            k, m = int(is_masked[:, cols].sum()), is_masked[:, cols].numel()
            if not _within(k, m, p):
                raise fail(f"mask_tokens chose {k / m:.3f} of the positions in the {part} quarter of each row; "
                           f"expected about {p} everywhere", case,
                           "every position should be chosen independently, with the same probability, wherever it "
                           "is in the sequence.")
        got, original = inputs[is_masked], ids[is_masked]  # (N,) each: the chosen positions
        to_mask, kept = got == mask_id, got == original
        replaced = ~to_mask & ~kept
        if bool(((got < 0) | (got >= vocab_size))[replaced].any()):
            bad = int(got[replaced & ((got < 0) | (got >= vocab_size))][0])
            raise fail(f"mask_tokens put id {bad} at a chosen position: not mask_id and outside [0, vocab_size)", case,
                       "random replacements are ordinary tokens, drawn from range(vocab_size); mask_id and other "
                       "special tokens may lie beyond it.")
        expected = {"replaced by mask_id": (to_mask, 0.8),
                    "replaced by a random token": (replaced, 0.1 * (1 - 1 / vocab_size)),
                    "left unchanged": (kept, 0.1 + 0.1 / vocab_size)}  # a random token may equal the original
        for what, (which, share) in expected.items():
            k = int(which.sum())
            if not _within(k, chosen, share):
                raise fail(f"of the {chosen} chosen positions, {k} ({k / max(chosen, 1):.3f}) were {what}; "
                           f"expected about {share:.3f}", case,
                           "of the chosen positions, 80% become mask_id, 10% a random token and 10% keep theirs (a "
                           "random token equal to the original also counts as unchanged).")
        counts = torch.bincount(got[replaced], minlength=vocab_size)[:vocab_size].double()  # (V,)
        if counts.max() > 3 * counts.mean() + 10 or counts.min() < counts.mean() / 3 - 3:
            raise fail(f"the random replacements are not spread evenly over the vocabulary (counts per id from "
                       f"{int(counts.min())} to {int(counts.max())})", case,
                       "draw each replacement uniformly from [0, vocab_size), independently of the original token.")
        again = _run_mask_tokens(fn, case, seed=i, hint=hint)
        if not (torch.equal(again[0], inputs) and torch.equal(again[1], is_masked)):
            raise fail("two calls with generators seeded alike gave different results", case,
                       "take every random number from the generator argument: torch.rand(..., generator=generator) "
                       "and torch.randint(..., generator=generator), never the global random state.")
        other = _run_mask_tokens(fn, case, seed=i + 10, hint=hint)
        if torch.equal(other[1], is_masked):
            raise fail("generators with different seeds chose the same positions", case,
                       "draw the random numbers from the generator you are given; do not re-seed inside the function.")
    passed("mask_tokens", len(cases))


# ---------- masked_lm_loss: cross-entropy over the masked positions only ----------

def _mlm_reference(logits, targets, is_masked):
    total, count = torch.zeros((), dtype=torch.float64), 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if is_masked[b, t]:
                row = logits[b, t].double()
                total = total + torch.logsumexp(row, dim=0) - row[targets[b, t]]  # -log softmax(row)[target]
                count += 1
    return (total / count).to(logits.dtype)


def _per_position(logits, targets):
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T)


def _mlm_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(10)
    cases = []
    sizes = [(3, 7, 11, 1.0, False), (4, 5, 6, 4.0, True), (2, 9, 13, 0.1, False), (5, 4, 3, 2.0, True)]
    for B, T, V, scale, empty_row in sizes:
        logits = torch.randn(B, T, V, generator=gen) * scale
        targets = torch.randint(V, (B, T), generator=gen)
        is_masked = torch.rand(B, T, generator=gen) < 0.35
        is_masked[0, :2] = True  # at least two masked positions ...
        is_masked[0, 2:] = False  # ... and rows with different numbers of them
        if empty_row:
            is_masked[-1] = False  # a row with nothing masked
        label = (f"logits ({B}, {T}, {V}) ~{scale:g}, targets ({B}, {T}), is_masked with "
                 f"{[int(r.sum()) for r in is_masked]} masked positions per row")
        cases.append(Case((logits, targets, is_masked), label))
    return cases


def masked_lm_loss(fn) -> None:
    """fn(logits (B, T, V), targets (B, T), is_masked (B, T) bool) -> () mean cross-entropy at masked positions."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    check_function(
        "masked_lm_loss", fn, _mlm_reference, _mlm_cases(), grad=True, arg_names=("logits",), rtol=1e-5, atol=1e-6,
        hint="select the masked positions (logits[is_masked] is (N, V), targets[is_masked] is (N,)), then take the "
             "mean cross-entropy over those N positions only.",
        diagnoses=[
            Diagnosis(lambda lg, y, m: _per_position(lg, y).mean(),
                      "you averaged over every position; the loss counts the masked positions only (the others show "
                      "the model its own answer)."),
            Diagnosis(lambda lg, y, m: _per_position(lg, y)[~m].mean(),
                      "the mask is inverted: is_masked is True at the positions the loss is taken over."),
            Diagnosis(lambda lg, y, m: _per_position(lg, y)[m].sum(),
                      "you summed; take the mean over the masked positions."),
            Diagnosis(lambda lg, y, m: (_per_position(lg, y) * m).sum() / m.numel(),
                      "you divided by B * T; divide by the number of masked positions."),
            Diagnosis(lambda lg, y, m: ((_per_position(lg, y) * m).sum(1) / m.sum(1)).mean(),
                      "you averaged within each row first: a row with one masked token then weighs as much as one with "
                      "many (and a row with none gives 0/0). Average over all masked positions at once."),
            Diagnosis(lambda lg, y, m: -lg.gather(-1, y[..., None])[..., 0][m].mean(),
                      "you averaged the raw logits of the targets; cross-entropy needs log_softmax (or "
                      "F.cross_entropy)."),
        ],
    )
