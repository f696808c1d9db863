"""Chapter 16's checkers accept correct answers and reject the stub and plausible wrong answers,
naming the mistake where it is a known one."""

import torch
import torch.nn.functional as F

from tinycore.checks import swin as swin_checks
from checker_harness import contract_tests

# ---------- correct answers, written independently of the checkers' references ----------


def window_partition(x, window_size):
    B, H, W, C = x.shape
    M = window_size
    x = x.view(B, H // M, M, W // M, M, C).permute(0, 1, 3, 2, 4, 5)  # (B, H/M, W/M, M, M, C)
    return x.reshape(-1, M, M, C)


def window_partition_by_unfold(x, window_size):
    """Another correct answer: torch's unfold along H, then W."""
    M, C = window_size, x.shape[-1]
    windows = x.unfold(1, M, M).unfold(2, M, M)  # (B, H/M, W/M, C, M, M)
    return windows.permute(0, 1, 2, 4, 5, 3).reshape(-1, M, M, C)


def shifted_window_mask(height, width, window_size, shift):
    """The official code's way: nine region labels on the rolled map, compared within windows."""
    M, s = window_size, shift
    labels = torch.zeros(height, width, dtype=torch.long)
    bands_h = [(0, height - M), (height - M, height - s), (height - s, height)]
    bands_w = [(0, width - M), (width - M, width - s), (width - s, width)]
    count = 0
    for h0, h1 in bands_h:
        for w0, w1 in bands_w:
            labels[h0:h1, w0:w1] = count
            count += 1
    windows = window_partition(labels[None, :, :, None], M).reshape(-1, M * M)  # (nW, N)
    return windows[:, :, None] == windows[:, None, :]


def shifted_window_mask_two_bands(height, width, window_size, shift):
    """Also correct: two bands per axis suffice, because [0, n - M) never shares a window with the rest."""
    rows = (torch.arange(height) >= height - shift).long()
    cols = (torch.arange(width) >= width - shift).long()
    labels = rows[:, None] * 2 + cols[None, :]  # (H, W)
    windows = window_partition(labels[None, :, :, None], window_size).reshape(-1, window_size ** 2)
    return windows[:, :, None] == windows[:, None, :]


def relative_position_index(window_size):
    M = window_size
    ys, xs = torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()  # (N,)
    dy = ys[:, None] - ys[None, :] + M - 1  # (N, N), in [0, 2M - 2]
    dx = xs[:, None] - xs[None, :] + M - 1
    return dy * (2 * M - 1) + dx


def patch_merging(x, weight):
    x0, x1, x2, x3 = x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]
    h = torch.cat([x0, x1, x2, x3], dim=-1)  # (B, H/2, W/2, 4C)
    return F.layer_norm(h, h.shape[-1:]) @ weight.T


RIGHT = {
    "window_partition": [window_partition, window_partition_by_unfold],
    "shifted_window_mask": [shifted_window_mask, shifted_window_mask_two_bands],
    "relative_position_index": relative_position_index,
    "patch_merging": patch_merging,
}


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

def _rolled_the_other_way(height, width, window_size, shift):
    rows = (torch.arange(height) < shift).long()  # the wrapped tokens put at the start
    cols = (torch.arange(width) < shift).long()
    labels = rows[:, None] * 2 + cols[None, :]
    windows = window_partition(labels[None, :, :, None], window_size).reshape(-1, window_size ** 2)
    return windows[:, :, None] == windows[:, None, :]


def _column_major_windows(x, M):
    B, H, W, C = x.shape
    return x.view(B, H // M, M, W // M, M, C).permute(0, 3, 1, 2, 4, 5).reshape(-1, M, M, C)


def _images_interleaved(x, M):
    B, C = x.shape[0], x.shape[-1]
    return window_partition(x, M).view(B, -1, M, M, C).transpose(0, 1).reshape(-1, M, M, C)


def _concatenated(x):
    return torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)


def _windows_row_major_neighbours(x, weight):
    B, H, W, C = x.shape
    h = x.view(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H // 2, W // 2, 4 * C)
    return F.layer_norm(h, (4 * C,)) @ weight.T


WRONG = {
    "window_partition": [
        (lambda x, M: x.reshape(-1, M, M, x.shape[-1]), "plain reshape"),
        (lambda x, M: window_partition(x, M).transpose(1, 2), "transposed"),
        (_column_major_windows, "column-major"),
        (_images_interleaved, "interleaved"),
        (lambda x, M: window_partition(x, M).double(), "torch.float32"),
    ],
    "shifted_window_mask": [
        (lambda H, W, M, s: torch.ones((H // M) * (W // M), M * M, M * M, dtype=torch.bool), "everything is allowed"),
        (lambda H, W, M, s: ~shifted_window_mask(H, W, M, s), "polarity is inverted"),
        (_rolled_the_other_way, "last `shift` rows"),
        (lambda H, W, M, s: torch.zeros(shifted_window_mask(H, W, M, s).shape).masked_fill(
            ~shifted_window_mask(H, W, M, s), -100.0), "additive float mask"),
        (lambda H, W, M, s: shifted_window_mask(H, W, M, s).long(), "return booleans"),
        (lambda H, W, M, s: shifted_window_mask(H, W, M, s).view(H // M, W // M, M * M, M * M).transpose(0, 1)
         .reshape(-1, M * M, M * M), "wrong order"),  # column-major windows
    ],
    "relative_position_index": [
        (lambda M: relative_position_index(M).T, "sign is flipped"),
        (lambda M: relative_position_index(M) // (2 * M - 1) * M + relative_position_index(M) % (2 * M - 1),
         "multiplied dy by M"),
        (lambda M: (relative_position_index(M) % (2 * M - 1)) * (2 * M - 1) + relative_position_index(M) // (2 * M - 1),
         "swapped"),
        (lambda M: relative_position_index(M) - (M - 1) * (2 * M - 1) - (M - 1), "shifted to start at 0"),
        (lambda M: relative_position_index(M).int(), "torch.long"),
    ],
    "patch_merging": [
        (_windows_row_major_neighbours, "row-major order"),
        (lambda x, w: _concatenated(x) @ w.T, "should be normalised"),
        (lambda x, w: F.layer_norm(_concatenated(x) @ w.T, (w.shape[0],)), "before the projection"),
        (lambda x, w: patch_merging(x, w).detach(), "not connected"),
        (lambda x, w: patch_merging(x, w)[:, :, :, : w.shape[0] // 2], "shape"),
    ],
}


def test_the_right_answers_agree_with_tinycore():
    from tinycore.windows import relative_position_index as index_ours
    from tinycore.windows import shifted_window_mask as mask_ours
    from tinycore.windows import window_partition as partition_ours

    x = torch.randn(2, 8, 12, 3)
    assert torch.equal(window_partition(x, 4), partition_ours(x, 4))
    assert torch.equal(window_partition_by_unfold(x, 4), partition_ours(x, 4))
    for size in [(8, 8, 4, 2), (56, 56, 7, 3), (6, 9, 3, 1)]:
        assert torch.equal(shifted_window_mask(*size), mask_ours(*size))
        assert torch.equal(shifted_window_mask_two_bands(*size), mask_ours(*size))
    assert torch.equal(relative_position_index(7), index_ours(7))


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=swin_checks.__all__)
