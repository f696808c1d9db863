"""Chapter 8's checkers (RoPE) accept correct answers and reject the stub and plausible wrong answers,
naming the mistake where it is a known one."""


import pytest
import torch

from checker_harness import contract_tests, assert_accepts
from tinycore import checks
from tinycore.checks import CheckFailed


# ---------- correct answers, written independently of the checkers' references ----------

def rope_frequencies(d_k, theta):
    return 1.0 / theta ** (torch.arange(0, d_k, 2).float() / d_k)


def apply_rope(x, token_positions, theta):
    """Explicit 2x2 rotation matrices, applied pair by pair with einsum."""
    d_k = x.shape[-1]
    angles = token_positions[:, None].to(x.dtype) * rope_frequencies(d_k, theta).to(x.dtype)  # (T, d_k/2)
    cos, sin = angles.cos(), angles.sin()
    rotation = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)  # (T, d_k/2, 2, 2)
    pairs = x.unflatten(-1, (d_k // 2, 2))  # (..., T, d_k/2, 2)
    return torch.einsum("tprc,...tpc->...tpr", rotation, pairs).flatten(-2)


def rope_to_half_split(weight, num_heads):
    """The reshape trick of Hugging Face's LLaMA conversion script."""
    rows, d_in = weight.shape
    return weight.view(num_heads, rows // num_heads // 2, 2, d_in).transpose(1, 2).reshape(rows, d_in)


def _half_split_rope(x, p, theta):
    half = x.shape[-1] // 2
    angles = p[:, None].to(x.dtype) * rope_frequencies(x.shape[-1], theta).to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()), -1)


def _evens_then_odds(d):
    return torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))


def _per_head(weight, num_heads, order):
    d_head = weight.shape[0] // num_heads
    return torch.cat([weight[h * d_head:(h + 1) * d_head][order(d_head)] for h in range(num_heads)])


RIGHT = {"rope_frequencies": rope_frequencies, "apply_rope": apply_rope, "rope_to_half_split": rope_to_half_split}

WRONG = {
    "rope_frequencies": [
        (lambda d, th: th ** (-torch.arange(d // 2) / d), "exponent is -i/d_k"),
        (lambda d, th: th ** -torch.linspace(0, 1, d // 2), "exactly 1/theta"),
        (lambda d, th: th ** (torch.arange(0, d, 2) / d), "grow"),
        (lambda d, th: th ** (-torch.arange(2, d + 2, 2) / d), "counted from 1"),
        (lambda d, th: th ** (-torch.arange(0, d) / d), "shape"),
        (lambda d, th: (1000 * th ** (-torch.arange(0, d, 2) / d)).long(), "floating point"),
    ],
    "apply_rope": [
        (_half_split_rope, "half-split"),
        (lambda x, p, th: apply_rope(x, -p, th), "wrong way"),
        (lambda x, p, th: apply_rope(x, 0 * p, th), "equals the input"),
        (lambda x, p, th: apply_rope(x, torch.arange(x.shape[-2]), th), "positions 0..T-1"),
        (lambda x, p, th: apply_rope(x, p / 2, th), "differs"),
        (lambda x, p, th: apply_rope(x, p, th).detach(), "not connected"),
        (lambda x, p, th: apply_rope(x.float(), p, th), "dtype"),
    ],
    "rope_to_half_split": [
        (lambda w, h: w.clone(), "unchanged"),
        (lambda w, h: rope_to_half_split(w, 1), "all the rows at once"),
        (lambda w, h: _per_head(w, h, lambda d: torch.argsort(_evens_then_odds(d))), "inverse permutation"),
        (lambda w, h: _per_head(w, h, lambda d: _evens_then_odds(d).roll(d // 2)), "odd rows first"),
        (lambda w, h: rope_to_half_split(w.T.contiguous(), h).T, "columns"),
        (lambda w, h: torch.tensor(rope_to_half_split(w, h).tolist()), "not connected"),
    ],
}


def test_checkers_accept_other_correct_forms(capsys):
    """The complex-number form, float64 frequencies, and index-based permutations are all fine."""
    f64 = torch.float64

    def apply_rope_complex(x, p, theta):
        freqs = theta ** (-torch.arange(0, x.shape[-1], 2, dtype=torch.float64) / x.shape[-1])
        angles = p[:, None].double() * freqs
        z = torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
        return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2).to(x.dtype)

    def to_half_split_index(w, h):
        d_head = w.shape[0] // h
        perm = torch.cat((torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)))
        return w[(torch.arange(h)[:, None] * d_head + perm).flatten()]

    for name, answer in [
        ("rope_frequencies", lambda d, th: torch.tensor([th ** (-2 * i / d) for i in range(d // 2)], dtype=f64)),
        ("apply_rope", apply_rope_complex),
        ("rope_to_half_split", to_half_split_index),
    ]:
        assert_accepts(name, answer, capsys)


def test_the_half_split_weights_really_give_the_same_scores():
    """What rope_to_half_split is for: interleaved RoPE with W == half-split RoPE with the permuted W."""
    gen = torch.Generator().manual_seed(0)
    heads, d_head, d_model, T, theta = 3, 8, 24, 7, 10000.0
    wq, wk = torch.randn(d_model, d_model, generator=gen), torch.randn(d_model, d_model, generator=gen)
    x, p = torch.randn(T, d_model, generator=gen), torch.arange(T)

    def scores(wq, wk, rope):
        q = (x @ wq.T).view(T, heads, d_head).transpose(0, 1)  # (H, T, Dh)
        k = (x @ wk.T).view(T, heads, d_head).transpose(0, 1)
        return rope(q, p, theta) @ rope(k, p, theta).transpose(-2, -1)

    want = scores(wq, wk, apply_rope)
    got = scores(rope_to_half_split(wq, heads), rope_to_half_split(wk, heads), _half_split_rope)
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(scores(wq, wk, _half_split_rope), want, atol=1e-1)


def test_failure_message_does_not_show_the_reference():
    with pytest.raises(CheckFailed) as info:
        checks.apply_rope(lambda x, p, th: x * 0)
    message = str(info.value)
    assert "worst absolute error" in message and "Hint:" in message
    assert "view_as_complex" not in message and "def " not in message


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=checks.rope.__all__)
