"""Chapter 11's checkers accept a correct answer and reject the stub and plausible wrong answers,
naming the mistake where it is a known one."""

import pytest
import torch
import torch.nn.functional as F

import tinycore
from checker_harness import contract_tests
from tinycore import checks

# ---------- correct answers, written independently of the checkers' references ----------


def causal_lm_loss(logits, token_ids):
    logp = logits[:, :-1].log_softmax(dim=-1)  # (B, T-1, V)
    return -logp.gather(-1, token_ids[:, 1:, None]).mean()  # (B, T-1, 1) -> ()


def causal_lm_loss_transposed(logits, token_ids):
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), token_ids[:, 1:])  # class axis second


def temperature_probs(logits, temperature):
    z = logits / temperature
    e = (z - z.max(dim=-1, keepdim=True).values).exp()
    return e / e.sum(dim=-1, keepdim=True)


def temperature_probs_from_powers(logits, temperature):
    """p_j^(1/tau), renormalised: the same distribution, reached from the untempered probabilities."""
    return torch.softmax(torch.log_softmax(logits, dim=-1) / temperature, dim=-1)


def top_k_filter(logits, k):
    kth = logits.sort(dim=-1, descending=True).values[..., k - 1 : k]  # (..., 1)
    return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))


def top_k_filter_in_place(logits, k):
    """The nanoGPT style: edit a copy in place."""
    out = logits.clone()
    out[out < torch.topk(out, k).values[..., [-1]]] = float("-inf")
    return out


RIGHT = {
    "causal_lm_loss": [causal_lm_loss, causal_lm_loss_transposed],
    "temperature_probs": [temperature_probs, temperature_probs_from_powers],
    "top_k_filter": [top_k_filter, top_k_filter_in_place, tinycore.top_k_filter],
}

# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------


def _flat_ce(logits, targets, **kwargs):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), **kwargs)


def _filter_in_place(logits, k):
    return logits.masked_fill_(logits < logits.topk(k, dim=-1).values[..., -1:], float("-inf"))


def _keep_exactly_k(logits, k):
    idx = logits.topk(k, dim=-1).indices
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, idx, logits.gather(-1, idx))


WRONG = {
    "causal_lm_loss": [
        (lambda lg, ids: _flat_ce(lg, ids), "copying, not predicting"),
        (lambda lg, ids: _flat_ce(lg[:, 1:], ids[:, :-1]), "the wrong way"),
        (lambda lg, ids: _flat_ce(lg, ids.roll(-1, dims=1)), "wrapped the first token"),
        (lambda lg, ids: _flat_ce(lg[:, :-1], ids[:, 1:], reduction="sum"), "summed over the predictions"),
        (lambda lg, ids: _flat_ce(lg[:, :-1], ids[:, 1:], reduction="sum") / ids.shape[0],
         "averaged over the batch only"),
        (lambda lg, ids: _flat_ce(lg[:, :-1], ids[:, 1:], reduction="sum") / ids.numel(), "T - 1 predictions"),
        (lambda lg, ids: F.cross_entropy(lg[:, :-1], ids[:, 1:]), "raised"),  # class axis must come second
        (lambda lg, ids: -lg[:, :-1].log_softmax(1).gather(-1, ids[:, 1:, None]).mean(), "time axis"),
        (lambda lg, ids: F.cross_entropy(lg[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none"),
         "one loss per prediction"),
        (lambda lg, ids: _flat_ce(lg[:, :-1], ids[:, 1:]).detach(), "not connected"),
    ],
    "temperature_probs": [
        (lambda lg, tau: torch.softmax(lg * tau, dim=-1), "multiplied by the temperature"),
        (lambda lg, tau: torch.softmax(lg / tau, dim=0), "does not sum to 1 over the last axis"),
        (lambda lg, tau: torch.softmax(lg, dim=-1) / tau, "divided the probabilities"),
        (lambda lg, tau: torch.log_softmax(lg / tau, dim=-1), "log-probabilities"),
        (lambda lg, tau: (lg / tau).exp() / (lg / tau).exp().sum(-1, keepdim=True), "overflowed"),
        (lambda lg, tau: torch.softmax(lg, dim=-1), "temperature is missing"),
        (lambda lg, tau: torch.softmax(lg / tau, dim=-1).double(), "dtype"),
    ],
    "top_k_filter": [
        (_keep_exactly_k, "ties"),
        (lambda lg, k: top_k_filter(lg, min(k + 1, lg.shape[-1])), "kept k + 1"),
        (lambda lg, k: lg.masked_fill(lg <= lg.topk(k, dim=-1).values[..., -1:], float("-inf")), "only k - 1"),
        (lambda lg, k: lg.masked_fill(lg < lg.topk(k, dim=-1).values[..., -1:], 0.0), "with 0"),
        (lambda lg, k: lg.masked_fill(lg < lg.topk(k, dim=-1).values[..., -1:], -1e9), "finite number"),
        (lambda lg, k: lg.masked_fill(lg > lg.sort(dim=-1).values[..., k - 1 : k], float("-inf")), "smallest"),
        (lambda lg, k: lg.sort(dim=-1, descending=True).values.masked_fill(
            torch.arange(lg.shape[-1]) >= k, float("-inf")), "first difference at index"),
        (lambda lg, k: torch.softmax(top_k_filter(lg, k), dim=-1), "returned probabilities"),
        (_filter_in_place, "changed its input logits in place"),
        (lambda lg, k: top_k_filter(lg, k).double(), "dtype"),
    ],
}


def test_the_reference_answers_agree_with_tinycore():
    gen = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(3, 6, 65, generator=gen), torch.randint(65, (3, 6), generator=gen)
    assert torch.allclose(causal_lm_loss(logits, ids), tinycore.lm_loss(logits[:, :-1], ids[:, 1:]))
    for k in (1, 5, 65):
        assert torch.equal(top_k_filter(logits, k), tinycore.top_k_filter(logits, k))
        assert (torch.isfinite(top_k_filter(logits, k)).sum(-1) == k).all()  # no ties in random logits
    # sample_next divides by the temperature before the softmax: its draws follow temperature_probs
    probs = temperature_probs(logits[0, :1], 0.7)  # (1, V)
    draws = tinycore.sample_next(logits[0, :1].expand(20000, -1), 0.7, generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(draws, minlength=65).float() / len(draws)
    assert (freq - probs[0]).abs().max() < 0.015


def test_ties_at_the_kth_value_are_all_kept():
    logits = torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.0]])
    assert torch.isfinite(top_k_filter(logits, 2)).tolist() == [[True, True, True, True, False]]
    assert torch.equal(top_k_filter(logits, 2), tinycore.top_k_filter(logits, 2))


@pytest.mark.parametrize("name", ["causal_lm_loss", "temperature_probs", "top_k_filter"])
def test_a_wrong_shape_is_named(name):
    wrong = {
        "causal_lm_loss": lambda lg, ids: causal_lm_loss(lg, ids)[None],
        "temperature_probs": lambda lg, tau: temperature_probs(lg, tau).transpose(0, -1),
        "top_k_filter": lambda lg, k: top_k_filter(lg, k)[..., :-1],
    }[name]
    with pytest.raises(checks.CheckFailed, match="shape"):
        getattr(checks, name)(wrong)


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=checks.lm.__all__)
