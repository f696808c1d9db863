"""The chapter 9 checkers (pre_norm_block, post_norm_block, warmup_cosine_lr) accept correct answers and
reject the stub and plausible wrong answers, naming the mistake where it is a known one."""

import math

import torch

from checker_harness import contract_tests
from tinycore.checks import block


# ---------- correct answers, written independently of the checkers' references ----------

def pre_norm_block(x, ln1, attn, ln2, ffn):
    stream = x + attn(ln1(x))  # attention reads a normalised copy and writes into the stream
    return stream + ffn(ln2(stream))


def pre_norm_block_in_steps(x, ln1, attn, ln2, ffn):
    """The same, one sub-layer at a time in a loop over (norm, sub-layer) pairs."""
    for norm, sublayer in ((ln1, attn), (ln2, ffn)):
        x = torch.add(x, sublayer(norm(x)))
    return x


def post_norm_block(x, ln1, attn, ln2, ffn):
    stream = ln1(x + attn(x))
    return ln2(stream + ffn(stream))


def post_norm_block_in_steps(x, ln1, attn, ln2, ffn):
    for norm, sublayer in ((ln1, attn), (ln2, ffn)):
        x = norm(sublayer(x) + x)
    return x


def warmup_cosine_lr(step, max_lr, warmup_steps, total_steps, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def warmup_cosine_lr_as_tensor(step, max_lr, warmup_steps, total_steps, min_lr):
    """A 0-d tensor is accepted as a number."""
    if step < warmup_steps:
        return torch.tensor(max_lr * (step + 1) / warmup_steps)
    progress = torch.tensor((step - warmup_steps) / (total_steps - warmup_steps)).clamp(max=1.0)
    return min_lr + (max_lr - min_lr) * 0.5 * (1 + torch.cos(math.pi * progress))


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

def _lr_with(after_warmup):
    def lr(step, max_lr, warmup_steps, total_steps, min_lr):
        if step < warmup_steps:
            return max_lr * (step + 1) / warmup_steps
        return after_warmup(step, max_lr, warmup_steps, total_steps, min_lr)
    return lr


def _cos(progress, max_lr, min_lr):
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def _warm_computed_first(step, max_lr, warmup_steps, total_steps, min_lr):
    warm = max_lr * (step + 1) / warmup_steps  # divides by zero when there is no warm-up
    if step < warmup_steps:
        return warm
    return _cos(min(1.0, (step - warmup_steps) / (total_steps - warmup_steps)), max_lr, min_lr)


WRONG = {
    "pre_norm_block": [
        (post_norm_block, "that is the post-norm block"),
        (lambda x, ln1, attn, ln2, ffn: ffn(ln2(attn(ln1(x)))), "residual connections are missing"),
        (lambda x, ln1, attn, ln2, ffn: x + attn(ln1(x)) + ffn(ln2(x)), "'parallel' block"),
        (lambda x, ln1, attn, ln2, ffn: pre_norm_block(ln1(x), lambda h: h, attn, ln2, ffn), "normalised x"),
        (lambda x, ln1, attn, ln2, ffn: pre_norm_block(x, ln1, attn, ln1, ffn), "its own norm, ln2"),
        (lambda x, ln1, attn, ln2, ffn: pre_norm_block(x, ln2, attn, ln1, ffn), "swapped"),
        (lambda x, ln1, attn, ln2, ffn: ln2(pre_norm_block(x, ln1, attn, lambda h: h, ffn)),
         "not on the block's output"),
        (lambda x, ln1, attn, ln2, ffn: x + attn(ln1(x)), "differs"),  # forgot the FFN
        (lambda x, ln1, attn, ln2, ffn: pre_norm_block(x, ln1, attn, ln2, ffn).detach(), "not connected"),
        (lambda x, ln1, attn, ln2, ffn: pre_norm_block(x, ln1, attn, ln2, ffn)[:, -1], "shape"),
    ],
    "post_norm_block": [
        (pre_norm_block, "that is the pre-norm block"),
        (lambda x, ln1, attn, ln2, ffn: (lambda h: h + ln2(ffn(h)))(x + ln1(attn(x))), "normalises the sum"),
        (lambda x, ln1, attn, ln2, ffn: ln2(ffn(ln1(attn(x)))), "residual connections are missing"),
        (lambda x, ln1, attn, ln2, ffn: ln2(ln1(x + attn(x)) + ffn(x)), "must read the stream after ln1"),
        (lambda x, ln1, attn, ln2, ffn: post_norm_block(x, ln2, attn, ln1, ffn), "swapped"),
        (lambda x, ln1, attn, ln2, ffn: (lambda h: h + ffn(h))(ln1(x + attn(x))), "end with ln2"),
        (lambda x, ln1, attn, ln2, ffn: (lambda h: ln2(h + ffn(h)))(x + attn(x)), "ln1 is missing"),
        (lambda x, ln1, attn, ln2, ffn: post_norm_block(x, ln1, attn, ln2, ffn).double(), "dtype"),
    ],
    "warmup_cosine_lr": [
        (lambda s, m, w, n, lo: m * s / w if s < w else _cos(min((s - w) / (n - w), 1.0), m, lo), "starts at 0"),
        (_lr_with(lambda s, m, w, n, lo: _cos(min((s - w) / (n - w), 1.0), m, 0.0)), "end at min_lr"),
        (_lr_with(lambda s, m, w, n, lo: _cos(min(s / n, 1.0), m, lo)), "starts when the warm-up ends"),
        (_lr_with(lambda s, m, w, n, lo: m - (m - lo) * min((s - w) / (n - w), 1.0)), "linear decay"),
        (_lr_with(lambda s, m, w, n, lo: _cos((s - w) / (n - w), m, lo)), "stay at min_lr"),
        (_lr_with(lambda s, m, w, n, lo: _cos(2 * min((s - w) / (n - w), 1.0), m, lo)), "whole cosine period"),
        (_lr_with(lambda s, m, w, n, lo: m), "differs"),  # warm-up, then constant
        (_warm_computed_first, "ZeroDivisionError"),  # fails on the schedule without warm-up
        (lambda s, m, w, n, lo: [warmup_cosine_lr(s, m, w, n, lo)], "should return a number"),
        (lambda s, m, w, n, lo: None, "should return a number"),
    ],
}

RIGHT = {
    "pre_norm_block": [pre_norm_block, pre_norm_block_in_steps],
    "post_norm_block": [post_norm_block, post_norm_block_in_steps],
    "warmup_cosine_lr": [warmup_cosine_lr, warmup_cosine_lr_as_tensor],
}

(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, covers=block.__all__)


def test_block_checkers_leave_the_global_random_state_alone():
    """Building the test modules must not shift the learner's own random numbers."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    block.pre_norm_block(pre_norm_block)
    block.post_norm_block(post_norm_block)
    assert torch.equal(torch.rand(3), expected)


def test_the_block_checkers_compare_with_pytorchs_own_layer():
    """The oracle of the LayerNorm cases is nn.TransformerEncoderLayer itself, and the pre- and post-norm
    equations give different answers on every case (so neither checker could accept the other block)."""
    for norm_first in (True, False):
        for case, layer in block._block_cases(norm_first, seed=5):
            x, ln1, attn, ln2, ffn = case.args
            ours = (pre_norm_block if norm_first else post_norm_block)(x, ln1, attn, ln2, ffn)
            other = (post_norm_block if norm_first else pre_norm_block)(x, ln1, attn, ln2, ffn)
            assert (ours - other).abs().max() > 0.1
            if layer is not None:
                assert layer.norm_first is norm_first
                want = layer(x, src_mask=~torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril())
                assert torch.allclose(ours, want, atol=1e-5)
