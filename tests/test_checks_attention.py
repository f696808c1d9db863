"""The chapter 5 checkers (stable_softmax, causal_mask, masked_attention) accept correct answers and
reject the stub and plausible wrong answers, naming the mistake."""

import math

import torch

from tinycore import checks
from checker_harness import contract_tests, assert_accepts, assert_rejects


# ---------- correct answers, written independently of the checkers' references ----------

def stable_softmax(x, dim=-1):
    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)
    return e / e.sum(dim=dim, keepdim=True)


def causal_mask(t):
    i = torch.arange(t)
    return i[:, None] >= i[None, :]


def masked_attention(q, k, v, mask):
    scores = torch.einsum("...id,...jd->...ij", q, k) / math.sqrt(q.shape[-1])
    scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    return torch.einsum("...ij,...jd->...id", scores.softmax(-1), v)


def attention(q, k, v, mask, scale=None, dim=-1, polarity=True):
    """A parametrised (wrong when asked) attention for the rejection tests."""
    scale = math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) / scale
    scores = scores.masked_fill(mask != polarity, float("-inf"))
    return scores.softmax(dim) @ v


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

WRONG = {
    "stable_softmax": [
        (lambda x, dim=-1: x.exp() / x.exp().sum(dim, keepdim=True), "overflowed"),
        (lambda x, dim=-1: stable_softmax(x, -1), "wrong axis"),
        (lambda x, dim=-1: torch.exp(x - x.max(dim, keepdim=True).values), "do not sum to one"),
        (lambda x, dim=-1: stable_softmax(x / x.max(dim, keepdim=True).values, dim), "subtract it instead"),
        (lambda x, dim=-1: torch.exp(x - x.max()) / torch.exp(x - x.max()).sum(dim, keepdim=True), "differs"),
        (lambda x, dim=-1: stable_softmax(x, dim).detach(), "not connected"),
        (lambda x, dim=-1: stable_softmax(x.double(), dim), "dtype"),
    ],
    "causal_mask": [
        (lambda t: torch.ones(t, t, dtype=torch.bool).tril(diagonal=-1), "off by one"),
        (lambda t: torch.ones(t, t, dtype=torch.bool).triu(), "upper triangle"),
        (lambda t: torch.ones(t, t, dtype=torch.bool).triu(diagonal=1), "polarity is inverted"),
        (lambda t: torch.ones(t, t).tril(), "torch.bool"),
        (lambda t: torch.zeros(t, t).masked_fill(~causal_mask(t), float("-inf")), "additive bias"),
        (lambda t: causal_mask(t + 1), "shape"),
        (lambda t: causal_mask(t).tolist(), "should return a torch.Tensor"),
    ],
    "masked_attention": [
        (lambda q, k, v, m: attention(q, k, v, m, scale=math.sqrt(k.shape[-2])), "sqrt(Tk)"),
        (lambda q, k, v, m: attention(q, k, v, m, scale=1.0), "not scaled"),
        (lambda q, k, v, m: attention(q, k, v, m, scale=math.sqrt(v.shape[-1])), "v's width"),
        (lambda q, k, v, m: attention(q, k, v, m, polarity=False), "polarity is inverted"),
        (lambda q, k, v, m: attention(q, k, v, m, dim=-2), "over the queries"),
        (lambda q, k, v, m: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~m, 0.0).softmax(-1) @ v, "exp(0) = 1"),
        (lambda q, k, v, m: ((q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) * m) @ v, "no longer sum to one"),
        (lambda q, k, v, m: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) @ v, "does not depend on the mask"),
        (lambda q, k, v, m: attention(q, k, v, m, scale=math.sqrt(q.shape[-1] * q.shape[1])) if q.ndim == 4 else attention(q, k, v, m), "sqrt(H * d_k)"),
        (lambda q, k, v, m: attention(q, k, v, m, scale=q.shape[-1]), "its square root"),
        (lambda q, k, v, m: (q @ k.transpose(0, 1) / math.sqrt(q.shape[-1])).masked_fill(~m, float("-inf")).softmax(-1) @ v, "raised"),
        (lambda q, k, v, m: attention(q, k, v, m).detach(), "not connected"),
    ],
}

RIGHT = {"stable_softmax": stable_softmax, "causal_mask": causal_mask, "masked_attention": masked_attention}


def test_checkers_accept_other_correct_answers(capsys):
    assert_accepts("stable_softmax", lambda x, dim=-1: torch.softmax(x, dim), capsys)
    assert_accepts("stable_softmax", lambda x, dim: (x - x.amax(dim, keepdim=True).detach()).exp() / (x - x.amax(dim, keepdim=True).detach()).exp().sum(dim, keepdim=True), capsys)
    assert_accepts("causal_mask", lambda t: torch.ones(t, t, dtype=torch.bool).tril(), capsys)
    assert_accepts("masked_attention", lambda q, k, v, m: attention(q, k, v, m), capsys)


def test_failure_messages_do_not_show_the_reference():
    message = assert_rejects("masked_attention", WRONG["masked_attention"][1][0], "Hint:")
    assert "scaled_dot_product_attention" not in message and "def " not in message
    message = assert_rejects("stable_softmax", WRONG["stable_softmax"][0][0], "Hint:")
    assert "torch.softmax" not in message and "def " not in message


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=checks.attention.__all__)
