"""Checkers for chapter 11 (the language-modelling loss, temperature, top-k filtering)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import Case, CheckFailed, Diagnosis, call_learner, check_function, compare, fail, passed, require_callable

__all__ = ["causal_lm_loss", "temperature_probs", "top_k_filter"]


def _same(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach().double(), b.detach().double(), rtol=tol, atol=tol)


# ---------- causal_lm_loss ----------

def _lm_loss(logits, token_ids):
    """PyTorch's cross-entropy of position t's logits against token t + 1."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), token_ids[:, 1:].reshape(-1))  # (B*(T-1), V) -> ()


def _unshifted(logits, token_ids):
    return F.cross_entropy(logits.flatten(0, 1), token_ids.flatten())


def _wrong_way(logits, token_ids):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, 1:].reshape(-1, V), token_ids[:, :-1].reshape(-1))


def _rolled(logits, token_ids):
    return F.cross_entropy(logits.flatten(0, 1), token_ids.roll(-1, dims=1).flatten())


def _time_softmax(logits, token_ids):
    logp = logits[:, :-1].log_softmax(dim=1)  # normalised over positions, not over the vocabulary
    return -logp.gather(-1, token_ids[:, 1:, None]).mean()


def causal_lm_loss(fn) -> None:
    """fn(logits (B, T, V), token_ids (B, T) long) -> scalar: mean loss of predicting token t + 1 from position t."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(110)
    cases = []
    for b, t, v, s in [(2, 5, 7, 1.0), (3, 4, 65, 3.0), (1, 9, 11, 30.0), (4, 2, 5, 1.0)]:
        logits = torch.randn(b, t, v, generator=gen) * s
        cases.append(Case((logits, torch.randint(v, (b, t), generator=gen)),
                          f"logits ({b}, {t}, {v}) with values ~{s:g}, token_ids ({b}, {t})"))

    def screen(got, want, case):
        __tracebackhide__ = True
        b, t = case.args[1].shape
        if got.shape in ((b, t - 1), (b * (t - 1),)):
            raise fail(f"causal_lm_loss returned one loss per prediction, shape {tuple(got.shape)}", case,
                       "the loss is a single number: the mean over all B * (T - 1) predictions.")
        return got

    check_function(
        "causal_lm_loss", fn, _lm_loss, cases, grad=True, arg_names=("logits",), screen=screen,
        hint=("position t predicts token t + 1: pair logits[:, :-1] with token_ids[:, 1:], flatten both so "
              "that every prediction is one row, and take the mean cross-entropy over the vocabulary axis."),
        diagnoses=[
            Diagnosis(_unshifted, "you compared position t's logits with token t itself: that is copying, not "
                                  "predicting. Position t predicts token t + 1, so drop the last position's logits "
                                  "and the first token."),
            Diagnosis(_wrong_way, "the shift goes the wrong way: logits[:, 1:] against token_ids[:, :-1] predicts "
                                  "each token from the position after it. Use logits[:, :-1] with token_ids[:, 1:]."),
            Diagnosis(_rolled, "torch.roll wrapped the first token around as the last position's target; the last "
                               "position has no next token inside the window, so leave it out."),
            Diagnosis(lambda lg, ids: _lm_loss(lg, ids) * ids[:, 1:].numel(),
                      "you summed over the predictions; the loss is their mean."),
            Diagnosis(lambda lg, ids: _lm_loss(lg, ids) * (ids.shape[1] - 1),
                      "you summed over positions and averaged over the batch only; average over every prediction."),
            Diagnosis(lambda lg, ids: _lm_loss(lg, ids) * (ids.shape[1] - 1) / ids.shape[1],
                      "you divided by B * T, but a window of T tokens holds only T - 1 predictions."),
            Diagnosis(lambda lg, ids: -_lm_loss(lg, ids),
                      "the sign is flipped: the loss is the *negative* log-likelihood."),
            Diagnosis(_time_softmax,
                      "you normalised over the time axis; softmax runs over the vocabulary (the last axis)."),
        ],
    )


# ---------- temperature_probs ----------

def _manual_softmax(z):
    e = z.exp()  # overflows to inf for large z
    return e / e.sum(-1, keepdim=True)


_NOT_NORMALISED = [  # (wrong answer, hint): answers whose rows do not sum to 1
    (lambda lg, tau: torch.softmax(lg, dim=-1) / tau,
     "you divided the probabilities by the temperature; divide the logits, then take the softmax."),
    (lambda lg, tau: torch.log_softmax(lg / tau, dim=-1), "you returned log-probabilities; return probabilities."),
    (lambda lg, tau: lg / tau, "you returned the scaled logits; apply the softmax to turn them into probabilities."),
]


def temperature_probs(fn) -> None:
    """fn(logits (..., V), temperature > 0) -> (..., V): softmax(logits / temperature) over the last axis."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(111)
    cases = []
    for shape, scale, tau in [((2, 7), 1.0, 0.5), ((3, 4, 65), 3.0, 2.0), ((6, 9), 1.0, 1.7), ((5, 11), 50.0, 0.1)]:
        cases.append(Case((torch.randn(shape, generator=gen) * scale, tau),
                          f"logits {shape} with values ~{scale:g}, temperature {tau:g}"))

    def reference(logits, temperature):
        return torch.softmax(logits / temperature, dim=-1)

    def screen(got, want, case):
        __tracebackhide__ = True
        if got.shape != want.shape or not torch.isfinite(got).all():
            return got
        sums = got.detach().sum(-1)
        if torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
            return got
        with torch.no_grad():
            for wrong, hint in _NOT_NORMALISED:
                if _same(got, wrong(*case.args)):
                    raise fail("temperature_probs's output is not a probability distribution", case, hint)
        raise fail(f"temperature_probs's output does not sum to 1 over the last axis (a row sums to "
                   f"{sums.flatten()[0].item():.4g})", case,
                   "the softmax normalises over the vocabulary, the last axis (dim=-1), "
                   "for any number of leading axes.")

    check_function(
        "temperature_probs", fn, reference, cases, grad=True, arg_names=("logits",), screen=screen,
        hint="divide the logits by the temperature, then take a numerically stable softmax over the last axis.",
        diagnoses=[
            Diagnosis(lambda lg, tau: torch.softmax(lg * tau, dim=-1),
                      "you multiplied by the temperature; divide by it, so that a temperature below 1 sharpens."),
            Diagnosis(lambda lg, tau: torch.softmax(lg, dim=-1),
                      "the temperature is missing: divide the logits by it."),
            Diagnosis(lambda lg, tau: _manual_softmax(lg / tau),
                      "exp() overflowed: with logits near 50 and temperature 0.1 the scaled logits reach 500. "
                      "Subtract each row's maximum before exp (or use torch.softmax)."),
        ],
    )


# ---------- top_k_filter ----------

def _top_k_loop(logits, k):
    """Row by row: keep every logit >= the k-th largest of its row, the rest -inf."""
    rows = logits.reshape(-1, logits.shape[-1])
    out = torch.empty_like(rows)
    for i, row in enumerate(rows.tolist()):
        kth = sorted(row, reverse=True)[k - 1]
        out[i] = torch.tensor([v if v >= kth else float("-inf") for v in row], dtype=logits.dtype)
    return out.reshape(logits.shape)


def _exactly_k(logits, k):
    """Exactly k survivors per row, by index: breaks ties at the k-th value arbitrarily."""
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


def _k_smallest(logits, k):
    return logits.masked_fill(torch.isneginf(_top_k_loop(-logits, k)), float("-inf"))


def top_k_filter(fn) -> None:
    """fn(logits (..., V), k) -> (..., V): the k largest logits of each row kept (ties too), the rest -inf."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(112)
    ties = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0, 3.0, -1.0, 2.0, 1.0],
                         [0.5, 0.5, 0.5, 0.5, 0.5, 2.0, -3.0, 0.5, 1.0, 0.5]])  # (2, 10)
    cases = [
        Case((torch.randn(2, 9, generator=gen), 3), "logits (2, 9), k = 3"),
        Case((torch.randn(3, 4, 65, generator=gen) * 2, 5), "logits (3, 4, 65), k = 5"),
        Case((ties, 3), f"logits (2, 10) = {ties.tolist()}, k = 3: ties at the k-th largest value"),
        Case((torch.randn(4, 6, generator=gen) - 5, 1), "logits (4, 6), all negative, k = 1"),
        Case((torch.randn(2, 7, generator=gen), 7), "logits (2, 7), k = 7 = V: nothing to remove"),
    ]

    hint = ("find each row's k-th largest logit (torch.topk along the last axis), and replace every logit "
            "strictly below it by float('-inf'); keep the others unchanged.")
    diagnoses = [
        Diagnosis(_exactly_k, "ties: when several logits equal the k-th largest, keep all of them (compare "
                              "values with the k-th largest rather than keeping k indices)."),
        Diagnosis(lambda lg, k: _top_k_loop(lg, min(k + 1, lg.shape[-1])),
                  "you kept k + 1 logits: the k-th largest is at index k - 1 of a descending sort."),
        Diagnosis(lambda lg, k: _top_k_loop(lg, k - 1) if k > 1 else torch.full_like(lg, float("-inf")),
                  "you kept only k - 1 logits: keep those equal to the k-th largest too (>=, not >)."),
        Diagnosis(_k_smallest, "you kept the k smallest logits; keep the k largest."),
        Diagnosis(lambda lg, k: torch.softmax(_top_k_loop(lg, k), dim=-1),
                  "you returned probabilities; return the filtered logits (the softmax comes later, when sampling)."),
    ]
    require_callable(fn, "top_k_filter")
    for case in cases:
        logits = case.args[0].clone()  # the learner's private copy
        want = _top_k_loop(*case.args)
        got = call_learner(fn, "top_k_filter", Case((logits, case.args[1]), case.label), hint)
        if not torch.equal(logits, case.args[0]):
            raise fail("top_k_filter changed its input logits in place", case,
                       "return a new tensor (masked_fill, not masked_fill_ or assignment into the input): "
                       "the caller may still need the unfiltered logits.")
        if isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype:
            _top_k_mistakes(got, want, case, hint, diagnoses)
        compare("top_k_filter", got, want, case, rtol=1e-6, atol=1e-6, hint=hint, diagnoses=diagnoses)
    passed("top_k_filter", len(cases))


def _top_k_mistakes(got, want, case, hint, diagnoses) -> None:
    """Name the mistake of an output that differs from `want`; -inf entries count as equal to -inf."""
    __tracebackhide__ = True
    removed = torch.isneginf(want)
    if removed.any() and torch.isfinite(got[removed]).all() and _same(got[~removed], want[~removed]):
        if (got[removed] == 0).all():  # the right logits kept, the others 0
            raise fail("top_k_filter filled the removed logits with 0", case,
                       "a logit of 0 is still a possible token (often a likely one); fill with float('-inf') "
                       "so that the softmax gives it probability exactly 0.")
        raise fail("top_k_filter filled the removed logits with a finite number", case,
                   "fill them with float('-inf'): then no temperature or logit size can give them probability.")
    wrong = ~((got == want) | torch.isclose(got, want, rtol=1e-6, atol=1e-6))  # -inf == -inf counts as equal
    if not wrong.any():
        return
    index = tuple(int(i) for i in wrong.nonzero()[0])
    message = (f"top_k_filter's output differs from the reference\n  on input: {case.label}\n"
               f"  first difference at index {index}: got {got[index].item():.6g}, expected {want[index].item():.6g}")
    for diagnosis in diagnoses:
        if _same(got, diagnosis.wrong(*case.args)):
            raise CheckFailed(message + f"\n  Hint: {diagnosis.hint}")
    raise CheckFailed(message + f"\n  Hint: {hint}")
