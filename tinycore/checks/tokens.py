"""Checkers for chapter 1 (embeddings, bigram counts, the cross-entropy loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import Case, Diagnosis, check_function

__all__ = ["one_hot_embed", "count_bigrams", "cross_entropy"]


def one_hot_embed(fn) -> None:
    """fn(token_ids (B, T) long, weight (V, D)) -> (B, T, D), computed as one_hot(ids) @ weight."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(10)
    cases = []
    for b, t, v, d in [(2, 5, 7, 3), (1, 1, 4, 4), (3, 4, 65, 16)]:  # (4, 4): a square table
        ids = torch.randint(v, (b, t), generator=gen)
        cases.append(Case((ids, torch.randn(v, d, generator=gen)), f"token_ids ({b}, {t}), weight ({v}, {d})"))
    check_function(
        "one_hot_embed", fn, F.embedding, cases, grad=True, arg_names=("token_ids", "weight"),
        hint="a one-hot row of length V picks one row of the (V, D) table; mind the dtype of one_hot's result.",
        diagnoses=[
            Diagnosis(
                lambda ids, w: F.one_hot(ids, w.shape[0]).to(w.dtype) @ w.T,
                "you multiplied by the transposed table: the weight is (V, D), one row per token.",
            ),
        ],
    )


def count_bigrams(fn) -> None:
    """fn(token_ids (N,) long, vocab_size) -> (V, V) long, counts[i, j] = #times j follows i."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(11)
    cases = []
    for n, v in [(12, 4), (2, 3), (200, 10)]:
        ids = torch.randint(v, (n,), generator=gen)
        cases.append(Case((ids, v), f"token_ids ({n},) = {ids.tolist()[:12]}{' ...' if n > 12 else ''}, vocab_size {v}"))

    def reference(ids, v):  # the plain loop, as an oracle
        counts = torch.zeros(v, v, dtype=torch.long)
        for current, following in zip(ids[:-1].tolist(), ids[1:].tolist()):
            counts[current, following] += 1
        return counts

    check_function(
        "count_bigrams", fn, reference, cases,
        hint="each consecutive pair (ids[t], ids[t+1]) adds one to row ids[t], column ids[t+1]; counts are integers.",
        diagnoses=[
            Diagnosis(lambda ids, v: reference(ids, v).T, "rows and columns are swapped: row = current token, column = next."),
            Diagnosis(
                lambda ids, v: reference(torch.cat([ids, ids[:1]]), v),
                "you also counted a pair that wraps from the last token back to the first.",
            ),
        ],
    )


def cross_entropy(fn) -> None:
    """fn(logits (B, T, V), targets (B, T) long) -> scalar: mean negative log-likelihood in nats."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(12)
    cases = []
    for b, t, v, s in [(2, 3, 5, 1.0), (1, 4, 65, 3.0), (3, 2, 7, 100.0)]:
        cases.append(Case(
            (torch.randn(b, t, v, generator=gen) * s, torch.randint(v, (b, t), generator=gen)),
            f"logits ({b}, {t}, {v}) with values ~{s:g}, targets ({b}, {t})",
        ))

    def reference(logits, targets):
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    check_function(
        "cross_entropy", fn, reference, cases, grad=True, arg_names=("logits",),
        hint=(
            "log-softmax over the vocabulary axis, pick each target's entry, average and negate; "
            "with logits near 100, exp() overflows unless you first subtract each row's maximum."
        ),
        diagnoses=[
            Diagnosis(lambda lg, tg: reference(lg, tg) * tg.numel(), "you summed over tokens; the loss is the mean."),
            Diagnosis(lambda lg, tg: -reference(lg, tg), "the sign is flipped: a loss is the *negative* log-likelihood."),
            Diagnosis(
                lambda lg, tg: -torch.log_softmax(lg, dim=1).gather(2, tg[..., None]).mean(),
                "you normalised over the time axis; softmax runs over the vocabulary (the last axis).",
            ),
        ],
    )
