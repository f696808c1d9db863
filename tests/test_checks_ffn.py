"""The chapter 4 checkers (gelu, feed_forward, swiglu) accept correct answers and reject the stub and
plausible wrong answers, naming the mistake where it is a known one."""

import math

import pytest
import torch

from checker_harness import contract_tests, assert_accepts
from tinycore import checks


# ---------- correct answers, written independently of the checkers' references ----------

def gelu(x):
    phi = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))  # the standard normal CDF
    return x * phi


def feed_forward(x, w1, w2):
    hidden = torch.einsum("...d,fd->...f", x, w1)  # (..., D) -> (..., F)
    return torch.einsum("...f,df->...d", gelu(hidden), w2)  # (..., F) -> (..., D)


def swiglu(x, w1, w2, w3):
    gate, up = x @ w1.T, x @ w3.T  # (..., F) each
    return (gate * torch.sigmoid(gate) * up) @ w2.T  # (..., F) -> (..., D)


def feed_forward_loop(x, w1, w2):
    """One token at a time, as the position-wise definition reads: also correct."""
    rows = x.reshape(-1, x.shape[-1])
    out = torch.stack([w2 @ gelu(w1 @ row) for row in rows])
    return out.reshape(x.shape)


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

WRONG = {
    "gelu": [
        (gelu_tanh, "tanh approximation"),
        (torch.relu, "that is ReLU"),
        (lambda x: x * torch.sigmoid(x), "SiLU"),
        (lambda x: x * torch.sigmoid(1.702 * x), "sigmoid approximation"),
        (lambda x: 0.5 * x * (1 + torch.erf(x)), "erf(x / sqrt(2))"),
        (lambda x: x * (1 + torch.erf(x / math.sqrt(2))), "factor 1/2"),
        (lambda x: gelu(x).float(), "dtype"),
        (lambda x: torch.tensor(gelu(x).tolist(), dtype=x.dtype), "not connected"),
    ],
    "feed_forward": [
        (lambda x, w1, w2: gelu(x @ w1) @ w2, "without transposing"),
        (lambda x, w1, w2: torch.relu(x @ w1.T) @ w2.T, "that is ReLU"),
        (lambda x, w1, w2: x @ w1.T @ w2.T, "no activation"),
        (lambda x, w1, w2: gelu_tanh(x @ w1.T) @ w2.T, "tanh approximation"),
        (lambda x, w1, w2: gelu(x @ w1.T @ w2.T), "not after w2"),
        (lambda x, w1, w2: gelu(x @ w1.T), "differs"),  # forgot w2: caught on the square case (F == D)
        (lambda x, w1, w2: gelu(x @ w1.T) @ w2, "differs"),  # transposed w2 only
        (lambda x, w1, w2: feed_forward(x, w1, w2).double(), "dtype"),
    ],
    "swiglu": [
        (lambda x, w1, w2, w3: swiglu(x, w3, w2, w1), "belongs on the gate, w1"),
        (lambda x, w1, w2, w3: (torch.sigmoid(x @ w1.T) * (x @ w3.T)) @ w2.T, "original GLU"),
        (lambda x, w1, w2, w3: (x @ w3.T) @ w2.T, "gate is missing"),
        (lambda x, w1, w2, w3: torch.nn.functional.silu(x @ w1.T) @ w2.T, "w3 x is missing"),
        (lambda x, w1, w2, w3: ((x @ w1.T) * (x @ w3.T)) @ w2.T, "no SiLU"),
        (lambda x, w1, w2, w3: (gelu(x @ w1.T) * (x @ w3.T)) @ w2.T, "GEGLU"),
        (lambda x, w1, w2, w3: (torch.nn.functional.silu(x @ w1) * (x @ w3)) @ w2, "without transposing"),
        (lambda x, w1, w2, w3: swiglu(x, w1, w3, w2), "swapped"),  # up = x @ w2.T, down = @ w3.T
    ],
}

RIGHT = {"gelu": [gelu], "feed_forward": [feed_forward, feed_forward_loop], "swiglu": [swiglu]}


def test_gelu_checker_accepts_torchs_own_gelu(capsys):
    assert_accepts("gelu", torch.nn.GELU(), capsys)


def test_transposed_weights_in_a_non_square_case_say_where_it_failed():
    """With F != D the transposed product cannot even run: the message shows the shapes involved."""
    from tinycore.checks import CheckFailed

    def transposed_unless_square(x, w1, w2):
        if w1.shape[0] == w1.shape[1]:
            return feed_forward(x, w1, w2)
        return gelu(x @ w1) @ w2

    with pytest.raises(CheckFailed, match=r"raised RuntimeError(.|\n)*w1 \(16, 6\)(.|\n)*Hint: .*x @ w1.T"):
        checks.feed_forward(transposed_unless_square)


def test_failure_message_does_not_show_the_reference_code():
    from tinycore.checks import CheckFailed

    for name, wrongs in WRONG.items():
        with pytest.raises(CheckFailed) as info:
            getattr(checks, name)(wrongs[0][0])
        message = str(info.value)
        assert "F.linear" not in message and "def " not in message and "F.gelu" not in message


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=checks.ffn.__all__)
