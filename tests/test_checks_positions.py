"""Chapter 7's checkers accept a correct answer and reject the stub and plausible wrong answers,
naming the mistake where it is a known one."""

import math

import pytest
import torch

from tinycore import checks
from checker_harness import contract_tests

# ---------- correct answers, written independently of the checkers' references ----------


def sinusoidal_table(num_positions, d_model):
    t = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (T, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (D/2,)
    table = torch.zeros(num_positions, d_model)
    table[:, 0::2] = torch.sin(t * freq)
    table[:, 1::2] = torch.cos(t * freq)
    return table


def relative_offsets(t_q, t_k):
    query_positions = torch.arange(t_q) + (t_k - t_q)  # (Tq,)
    return torch.arange(t_k)[None, :] - query_positions[:, None]  # (Tq, Tk)


def alibi(num_heads, t):
    slopes = torch.tensor([2.0 ** (-8.0 * h / num_heads) for h in range(1, num_heads + 1)])  # (H,)
    pos = torch.arange(t)
    distance = (pos[:, None] - pos[None, :]).abs().float()  # (T, T)
    return -slopes[:, None, None] * distance  # (H, T, T)


RIGHT = {"sinusoidal_table": sinusoidal_table, "relative_offsets": relative_offsets, "alibi": alibi}


def _halves(t, d):
    table = sinusoidal_table(t, d)
    return torch.cat([table[:, 0::2], table[:, 1::2]], dim=1)


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

WRONG = {
    "sinusoidal_table": [
        (lambda t, d: sinusoidal_table(t, d)[:, [j + 1 if j % 2 == 0 else j - 1 for j in range(d)]], "swapped"),
        (lambda t, d: _with_freq(t, d, lambda i: 10000.0 ** (-i / d)), "2i/d_model"),
        (lambda t, d: _with_freq(t, d, lambda i: 10000.0 ** (-i / d), by_feature=True), "feature index"),
        (lambda t, d: torch.sin(torch.arange(t)[:, None] * 10000.0 ** (-2 * (torch.arange(d) // 2) / d)), "every feature is a sine"),
        (_halves, "all the sines first"),
        (lambda t, d: sinusoidal_table(t + 1, d)[1:], "positions start at 0"),
        (lambda t, d: sinusoidal_table(t, d).double(), "float32"),
        (lambda t, d: sinusoidal_table(t, d).T, "shape"),
    ],
    "relative_offsets": [
        (lambda q, k: -relative_offsets(q, k), "sign is flipped"),
        (lambda q, k: torch.arange(k)[None, :] - torch.arange(q)[:, None], "last* t_q positions"),
        (lambda q, k: relative_offsets(q, k).abs(), "absolute value"),
        (lambda q, k: relative_offsets(q, k) + 2 * (k - q), "wrong direction"),
        (lambda q, k: relative_offsets(q, k).int(), "torch.int64"),
        (lambda q, k: relative_offsets(q, k).T, "shape"),
    ],
    "alibi": [
        (lambda h, t: -alibi(h, t), "wrong sign"),
        (lambda h, t: _alibi_slopes(h, t, [2.0 ** -(k + 1) for k in range(h)]), "only for 8 heads"),
        (lambda h, t: _alibi_slopes(h, t, [2.0 ** -k for k in range(h)]), "2^-h"),
        (lambda h, t: _alibi_slopes(h, t, [1.0] * h), "slope 1"),
        (lambda h, t: _alibi_slopes(h, t, [2.0 ** (-8.0 * k / h) for k in range(h)]), "h + 1"),
        (lambda h, t: alibi(h, t).flip(0), "reverse order"),
        (lambda h, t: alibi(h, t).tril() - alibi(h, t).triu(), "distance |i - j|"),
        (lambda h, t: alibi(h, t).double(), "float32"),
    ],
}


def _with_freq(t, d, freq_of_pair, by_feature=False):
    table = torch.zeros(t, d)
    pos = torch.arange(t, dtype=torch.float32)
    for j in range(d):
        f = 10000.0 ** (-j / d) if by_feature else freq_of_pair(j // 2)
        table[:, j] = torch.sin(pos * f) if j % 2 == 0 else torch.cos(pos * f)
    return table


def _alibi_slopes(h, t, slopes):
    pos = torch.arange(t)
    return -torch.tensor(slopes)[:, None, None] * (pos[:, None] - pos[None, :]).abs().float()


def test_the_checkers_sizes_differ_in_every_dimension():
    """A transposed answer must fail on shape: at least one case is not square."""
    from tinycore.checks import positions

    with pytest.raises(Exception, match="shape"):
        positions.sinusoidal_table(lambda t, d: sinusoidal_table(t, d).T)
    with pytest.raises(Exception, match="shape"):
        positions.relative_offsets(lambda q, k: relative_offsets(q, k).T)


def test_the_right_answers_agree_with_tinycore():
    from tinycore import alibi_bias, sinusoidal_positions
    from tinycore.positions import _offsets

    assert torch.allclose(sinusoidal_table(33, 12), sinusoidal_positions(33, 12), atol=1e-5)
    assert torch.equal(relative_offsets(4, 9), _offsets(4, 9))
    assert torch.allclose(alibi(8, 6), alibi_bias(8, 6))


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=checks.positions.__all__)
