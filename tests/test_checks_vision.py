"""Chapter 15's checkers (patchify, patch_embed_from_conv, prepend_cls) accept correct answers and reject the
stub and plausible wrong answers, naming the mistake."""

import torch
import torch.nn.functional as F
from torch import nn

from checker_harness import assert_messages_hide, assert_non_callables_explained, contract_tests
from tinycore import Linear, checks


# ---------- correct answers, written independently of the checkers' references ----------

def patchify(images, patch_size):
    B, C, H, W = images.shape
    p = patch_size
    x = images.view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
    return x.reshape(B, -1, C * p * p)


def patchify_unfold(images, patch_size):
    return F.unfold(images, kernel_size=patch_size, stride=patch_size).transpose(1, 2)


def patch_embed_from_conv(conv):
    D, C, p, _ = conv.weight.shape
    linear = nn.Linear(C * p * p, D)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(D, -1))
        linear.bias.copy_(conv.bias)
    return linear


def patch_embed_from_conv_tinycore(conv):
    D, C, p, _ = conv.weight.shape
    linear = Linear(C * p * p, D, bias=True)
    linear.weight = nn.Parameter(conv.weight.detach().flatten(1).clone())
    linear.bias = nn.Parameter(conv.bias.detach().clone())
    return linear


def prepend_cls(tokens, cls_token, pos_embedding):
    B, P, D = tokens.shape
    return torch.cat([cls_token.expand(B, 1, D), tokens], dim=1) + pos_embedding


def prepend_cls_by_padding(tokens, cls_token, pos_embedding):
    padded = F.pad(tokens, (0, 0, 1, 0))  # a zero row in front: (B, P + 1, D)
    first = torch.zeros_like(padded)
    first[:, 0] = cls_token
    return padded + first + pos_embedding[None]


# ---------- plausible wrong answers ----------

def _linear_with(weight, bias):
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def _grid(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p)


def _scaled_conv(conv):
    linear = patch_embed_from_conv(conv)
    with torch.no_grad():
        linear.weight.mul_(1.0 + (conv.weight.shape[1] == 2))
    return linear


def _edits_the_conv(conv):
    with torch.no_grad():
        conv.bias.zero_()
    return patch_embed_from_conv(conv)


WRONG = {
    "patchify": [
        (lambda x, p: _grid(x, p).permute(0, 2, 4, 3, 5, 1).reshape(x.shape[0], -1, x.shape[1] * p * p), "(p1, p2, c)"),
        (lambda x, p: _grid(x, p).permute(0, 4, 2, 1, 3, 5).reshape(x.shape[0], -1, x.shape[1] * p * p), "column by column"),
        (lambda x, p: _grid(x, p).permute(0, 2, 4, 1, 5, 3).reshape(x.shape[0], -1, x.shape[1] * p * p), "column-major"),
        (lambda x, p: x.reshape(x.shape[0], -1, x.shape[1] * p * p), "strips of consecutive pixels"),
        (lambda x, p: F.unfold(x, p, stride=p), "F.unfold"),
        (lambda x, p: _grid(x, p).permute(0, 2, 4, 1, 3, 5).reshape(x.shape[0], x.shape[2] // p, x.shape[3] // p, -1),
         "flatten the two grid axes"),
        (lambda x, p: patchify(x.detach(), p), "not connected"),
    ],
    "patch_embed_from_conv": [
        (lambda conv: _linear_with(conv.weight.permute(0, 2, 3, 1).reshape(conv.weight.shape[0], -1), conv.bias), "(p1, p2, c)"),
        (lambda conv: _linear_with(conv.weight.transpose(2, 3).reshape(conv.weight.shape[0], -1), conv.bias), "swapped the filters' rows"),
        (lambda conv: _linear_with(conv.weight.reshape(conv.weight.shape[0], -1), None), "bias is missing"),
        (lambda conv: conv.weight.reshape(conv.weight.shape[0], -1), "should return a Linear layer"),
        (lambda conv: nn.Linear(conv.weight.shape[0], conv.weight[0].numel()), "expected (D, C p p)"),
        (_scaled_conv, "differs from the reference"),
        (_edits_the_conv, "changed the convolution's own weights"),
    ],
    "prepend_cls": [
        (lambda t, c, pos: torch.cat([t, c.expand(t.shape[0], 1, -1)], dim=1) + pos, "at the end"),
        (lambda t, c, pos: torch.cat([c.expand(t.shape[0], 1, -1), t + pos[:-1]], dim=1), "off by one"),
        (lambda t, c, pos: torch.cat([c.expand(t.shape[0], 1, -1), t], dim=1), "forgot to add the position"),
        (lambda t, c, pos: torch.cat([c.expand(t.shape[0], 1, -1), t + pos[1:]], dim=1), "[CLS] token did not"),
        (lambda t, c, pos: t + pos[1:], "one more token than the input"),
        (lambda t, c, pos: torch.cat([c.detach().expand(t.shape[0], 1, -1), t], dim=1) + pos, "cls_token"),
    ],
}

RIGHT = {
    "patchify": [patchify, patchify_unfold],
    "patch_embed_from_conv": [patch_embed_from_conv, patch_embed_from_conv_tinycore],
    "prepend_cls": [prepend_cls, prepend_cls_by_padding],
}


def test_messages_do_not_show_the_reference_code():
    assert_messages_hide(WRONG, ("def ", "torch.stack", "torch.cat"))


def test_the_cases_give_the_dimensions_different_sizes():
    from tinycore.checks import vision

    for case in vision._patchify_cases():
        x, p = case.args
        B, C, H, W = x.shape
        assert H != W and H % p == 0 and W % p == 0 and H // p != W // p, case.label
    assert any(case.args[0].shape[1] > 1 for case in vision._patchify_cases())
    for conv, x, label in vision._conv_cases():
        assert x.shape[2] != x.shape[3] and conv.weight.shape[0] != conv.weight[0].numel(), label
    for case in vision._prepend_cases():
        tokens = case.args[0]
        assert len(set(tokens.shape)) == 3, case.label


def test_a_non_callable_is_explained():
    assert_non_callables_explained(("patchify", "patch_embed_from_conv", "prepend_cls"))


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=checks.vision.__all__)
