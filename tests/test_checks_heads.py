"""Chapter 6's checkers (split_heads, merge_heads, repeat_kv) accept correct answers and reject the stub and
plausible wrong answers, naming the mistake."""

import torch

from checker_harness import assert_messages_hide, assert_non_callables_explained, contract_tests
from tinycore import checks


# ---------- correct answers, written independently of the checkers' references ----------

def split_heads(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).permute(0, 2, 1, 3)


def split_heads_by_chunks(x, num_heads):
    return torch.stack(x.chunk(num_heads, dim=-1), dim=1)


def merge_heads(x):
    B, H, T, Dh = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, H * Dh)


def merge_heads_by_unbind(x):
    return torch.cat(x.unbind(dim=1), dim=-1)


def repeat_kv(x, n_rep):
    B, Hkv, T, Dh = x.shape
    return x[:, :, None, :, :].expand(B, Hkv, n_rep, T, Dh).reshape(B, Hkv * n_rep, T, Dh)


def repeat_kv_interleave(x, n_rep):
    return torch.repeat_interleave(x, n_rep, dim=1)


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

WRONG = {
    "split_heads": [
        (lambda x, H: x.view(x.shape[0], x.shape[1], x.shape[2] // H, H).permute(0, 3, 1, 2), "interleaved"),
        (lambda x, H: x.view(x.shape[0], H, x.shape[1], x.shape[2] // H), "without a transpose"),
        (lambda x, H: x.view(x.shape[0], x.shape[1], H, x.shape[2] // H), "did not move the head axis"),
        (lambda x, H: x.view(x.shape[0], x.shape[1], x.shape[2] // H, H), "split as (H, Dh)"),
        (lambda x, H: x.transpose(1, 2).reshape(x.shape[0], H, x.shape[1], x.shape[2] // H), "transposed first"),
        (lambda x, H: split_heads(x, H).flip(1), "differs"),
        (lambda x, H: split_heads(x.detach(), H), "not connected"),
    ],
    "merge_heads": [
        (lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]), "without transposing back"),
        (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "interleaved"),
        (lambda x: x.transpose(1, 2), "did not flatten"),
        (lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), "raised RuntimeError"),
        (lambda x: x.sum(1), "shape"),
    ],
    "repeat_kv": [
        (lambda x, n: x.repeat(1, n, 1, 1), "tiled"),
        (lambda x, n: x[:, None].expand(x.shape[0], n, *x.shape[1:]).reshape(x.shape[0], -1, *x.shape[2:]), "tiled"),
        (lambda x, n: x, "the input's shape"),
        (lambda x, n: x[:, :, None].expand(x.shape[0], x.shape[1], n, *x.shape[2:]), "flatten the kv-head and copy axes"),
        (lambda x, n: x.repeat_interleave(n, dim=-1).reshape(x.shape[0], -1, *x.shape[2:]), "feature axis"),
        (lambda x, n: x.repeat_interleave(n, dim=2).reshape(x.shape[0], -1, *x.shape[2:]), "token axis"),
        (lambda x, n: repeat_kv(x, n) * (1 + (x.shape[1] == 3)), "differs"),
    ],
}

RIGHT = {
    "split_heads": [split_heads, split_heads_by_chunks],
    "merge_heads": [merge_heads, merge_heads_by_unbind],
    "repeat_kv": [repeat_kv, repeat_kv_interleave],
}


def test_messages_do_not_show_the_reference_code():
    assert_messages_hide(WRONG, ("def ", "torch.cat", "repeat_interleave"))


def test_the_cases_give_every_dimension_a_different_size():
    from tinycore.checks import heads

    for case in heads._split_cases():
        x, H = case.args
        B, T, D = x.shape
        assert len({B, T, D, H, D // H}) == 5, case.label
    for case in heads._merge_cases():
        assert len(set(case.args[0].shape)) == 4, case.label
    for case in heads._repeat_cases():
        x, n_rep = case.args
        sizes = [*x.shape, n_rep] if n_rep > 1 else list(x.shape)
        assert len(set(sizes)) == len(sizes), case.label


def test_a_non_callable_is_explained():
    assert_non_callables_explained(RIGHT)


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=checks.heads.__all__)
