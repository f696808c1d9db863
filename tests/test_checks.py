"""Every exercise checker accepts a correct answer and rejects the stub and plausible wrong answers,
with a message that says what is wrong (and, for known mistakes, names the mistake)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from checker_harness import contract_tests
from tinycore import checks
from tinycore.checks import CheckFailed


# ---------- correct answers, written independently of the checkers' references ----------

def pairwise_sq_dists(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def last_token(x, lengths):
    return x[torch.arange(x.shape[0]), lengths - 1]


def masked_mean(x, mask):
    m = mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1)


def one_hot_embed(ids, weight):
    return F.one_hot(ids, weight.shape[0]).to(weight.dtype) @ weight


def count_bigrams(ids, v):
    counts = torch.zeros(v, v, dtype=torch.long)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1, dtype=torch.long), accumulate=True)
    return counts


def cross_entropy(logits, targets):
    shifted = logits - logits.max(-1, keepdim=True).values
    logp = shifted - shifted.exp().sum(-1, keepdim=True).log()
    return -logp.gather(-1, targets[..., None]).mean()


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def batch_norm(x, eps=1e-5):
    mu = x.mean((0, 1), keepdim=True)
    var = ((x - mu) ** 2).mean((0, 1), keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


def layer_norm_backward(x, g, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    inv = 1 / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + eps)
    xhat = (x - mu) * inv
    return inv * (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True))


def rms_norm(x, w, eps=1e-5):
    h = x.float()
    return (h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def partial_rms_norm(x, w, p, eps=1e-5):
    k = math.floor(p * x.shape[-1])
    return x / torch.sqrt(x[..., :k].pow(2).mean(-1, keepdim=True) + eps) * w


class GoodRMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.d, self.eps = d, eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        if x.shape[-1] != self.d:
            raise ValueError(f"expected last dimension {self.d}, got {x.shape[-1]}")
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

WRONG = {
    "pairwise_sq_dists": [
        (lambda x, y: torch.cdist(x, y), "its square"),
        (lambda x, y: ((x[:, None] - y[None]) ** 2).sum(-1).T, "shape"),
        (lambda x, y: ((x[:, None] - y[None])).sum(-1) ** 2, "differs"),
        (lambda x, y: x @ y.T, "differs"),
    ],
    "last_token": [
        (lambda x, n: x[:, -1], "padding included"),
        (lambda x, n: x[torch.arange(x.shape[0]), n], "raised IndexError"),
        (lambda x, n: x[:, n - 1], "shape"),
        (lambda x, n: x[torch.arange(x.shape[0]), n - 1].detach(), "not connected"),
    ],
    "masked_mean": [
        (lambda x, m: x.mean(1), "padding included"),
        (lambda x, m: (x * m[..., None]).sum(1) / x.shape[1], "divided by T"),
        (lambda x, m: masked_mean(x, ~m), "inverted"),
        (lambda x, m: (x * m[..., None]).sum(1), "differs"),
    ],
    "one_hot_embed": [
        (lambda ids, w: F.one_hot(ids, w.shape[0]) @ w, "raised RuntimeError"),
        (lambda ids, w: F.one_hot(ids, w.shape[0]).to(w.dtype) @ w.T, "shape"),  # caught on non-square cases first
        (lambda ids, w: F.embedding((ids + 1) % w.shape[0], w), "differs"),
        (lambda ids, w: F.embedding(ids, w).double(), "dtype"),
    ],
    "count_bigrams": [
        (lambda ids, v: count_bigrams(ids, v).T, "swapped"),
        (lambda ids, v: count_bigrams(torch.cat([ids, ids[:1]]), v), "wraps"),
        (lambda ids, v: count_bigrams(ids, v).float(), "dtype"),
        (lambda ids, v: count_bigrams(ids[1:], v), "differs"),
    ],
    "cross_entropy": [
        (lambda lg, tg: -(lg.exp() / lg.exp().sum(-1, keepdim=True)).log().gather(-1, tg[..., None]).mean(), "differs"),
        (lambda lg, tg: cross_entropy(lg, tg) * tg.numel(), "summed"),
        (lambda lg, tg: -cross_entropy(lg, tg), "sign"),
        (lambda lg, tg: -torch.log_softmax(lg, 1).gather(2, tg[..., None]).mean(), "time axis"),
        (lambda lg, tg: -torch.log_softmax(lg, -1).gather(-1, tg[..., None]).squeeze(-1), "shape"),
    ],
    "layer_norm": [
        (lambda x, w, b, eps=1e-5: (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b, "unbiased"),
        (lambda x, w, b, eps=1e-5: (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True, unbiased=False) + eps) * w + b, "outside the square root"),
        (lambda x, w, b, eps=1e-5: layer_norm(x, 1, 0, eps), "forgot to apply weight and bias"),
        (lambda x, w, b, eps=1e-5: layer_norm(x, w, b, 0.0) if x.abs().max() > 1e-2 else x, "differs"),
    ],
    "batch_norm": [
        (lambda x, eps=1e-5: layer_norm(x, 1, 0, eps), "that is LayerNorm"),
        (lambda x, eps=1e-5: (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True, unbiased=False) + eps), "batch axis only"),
        (lambda x, eps=1e-5: (x - x.mean((0, 1), keepdim=True)) / torch.sqrt(x.var((0, 1), keepdim=True) + eps), "unbiased"),
        (lambda x, eps=1e-5: x - x.mean((0, 1), keepdim=True), "differs"),
    ],
    "layer_norm_backward": [
        (lambda x, g, eps=1e-5: g / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps), "mean and the variance as constants"),
        (lambda x, g, eps=1e-5: (g - g.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps), "variance as a constant"),
        (lambda x, g, eps=1e-5: layer_norm_backward(x, g, eps) + g.mean(-1, keepdim=True) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps), "left out the mean"),
        (lambda x, g, eps=1e-5: g, "differs"),
    ],
    "rms_norm": [
        (lambda x, w, eps=1e-5: (x.float() / (x.float().pow(2).mean(-1, keepdim=True).sqrt() + eps)).to(x.dtype) * w, "outside the square root"),
        (lambda x, w, eps=1e-5: (F.layer_norm(x.float(), x.shape[-1:], eps=eps)).to(x.dtype) * w, "subtracted the mean"),
        (lambda x, w, eps=1e-5: x / x.float().norm(dim=-1, keepdim=True).to(x.dtype) * w, "norm"),
        (lambda x, w, eps=1e-5: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w, "float16"),
        (lambda x, w, eps=1e-5: rms_norm(x, w, eps).float(), "dtype"),
    ],
    "partial_rms_norm": [
        (lambda x, w, p, eps=1e-5: rms_norm(x, w, eps), "all D features"),
        (lambda x, w, p, eps=1e-5: partial_rms_norm(x, w, round(p * x.shape[-1]) / x.shape[-1] + 1e-9, eps), "rounded"),
        (lambda x, w, p, eps=1e-5: x / torch.sqrt(x[..., -math.floor(p * x.shape[-1]):].pow(2).mean(-1, keepdim=True) + eps) * w, "last k"),
        (lambda x, w, p, eps=1e-5: partial_rms_norm(x, w, p, eps)[..., : math.floor(p * x.shape[-1])], "shape"),
    ],
}

RIGHT = {
    "pairwise_sq_dists": pairwise_sq_dists, "last_token": last_token, "masked_mean": masked_mean,
    "one_hot_embed": one_hot_embed, "count_bigrams": count_bigrams, "cross_entropy": cross_entropy,
    "layer_norm": layer_norm, "batch_norm": batch_norm, "layer_norm_backward": layer_norm_backward,
    "rms_norm": rms_norm, "partial_rms_norm": partial_rms_norm,
}


def test_failure_message_gives_the_worst_error_and_a_hint_but_not_the_reference_code():
    with pytest.raises(CheckFailed) as info:
        checks.layer_norm(lambda x, w, b, eps=1e-5: x * 0)
    message = str(info.value)
    assert "worst absolute error" in message and "Hint:" in message and "at index" in message
    assert "F.layer_norm" not in message and "def " not in message


def test_rms_norm_module_checker():
    checks.rms_norm_module(GoodRMSNorm)

    class NoCheck(GoodRMSNorm):
        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class Renamed(nn.Module):
        def __init__(self, d, eps=1e-5):
            super().__init__()
            self.scale, self.eps = nn.Parameter(torch.ones(d)), eps

    class EpsIgnored(GoodRMSNorm):
        def __init__(self, d, eps=1e-5):
            super().__init__(d, eps=1e-2)

    class NotAModule:
        def __init__(self, d, eps=1e-5):
            pass

    cases = [(NoCheck, "your module raised RuntimeError"), (Renamed, "named 'weight'"), (EpsIgnored, "differs"),
             (NotAModule, "torch.nn.Module"), (lambda d: GoodRMSNorm(d), "raised TypeError")]
    for cls, phrase in cases:
        with pytest.raises(CheckFailed, match=phrase):
            checks.rms_norm_module(cls)


def test_checker_explains_a_non_callable_and_a_non_tensor():
    with pytest.raises(CheckFailed, match="pass your function itself"):
        checks.layer_norm(None)
    with pytest.raises(CheckFailed, match="returned a list"):
        checks.masked_mean(lambda x, m: [1, 2])


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=["rms_norm_module"])
