"""Local windows on a feature map: the bookkeeping behind Swin's windowed attention (Liu et al., 2021).

A feature map of H x W tokens, stored channels-last as (B, H, W, C), is cut into non-overlapping
M x M windows, and attention runs inside each window only: (H W) * M^2 score entries instead of
(H W)^2. Every other layer shifts the windows by s = M // 2 so that information crosses window
borders. Instead of cutting the shifted grid into smaller windows at the edges, Swin rolls the map
up and to the left by s (`cyclic_shift`) and cuts the rolled map into the same M x M windows. A
window that straddles the wrap-around then holds tokens that were far apart in the image; the
`shifted_window_mask` forbids those pairs. The official code finds them by labelling nine regions of
the rolled map (three bands of rows times three bands of columns, `shifted_window_regions`): two
tokens of a window may attend to each other iff they carry the same label.

Inside a window, the attention adds a learned bias indexed by the pair's relative coordinates
(dy, dx) in [-(M - 1), M - 1]^2: `relative_position_index` numbers the (2M - 1)^2 possible offsets.

Deviations from the official code (github.com/microsoft/Swin-Transformer):
- the mask is boolean, True = may attend (as everywhere in tinycore), instead of an additive float
  mask holding -100 for forbidden pairs; forbidden pairs then get weight exactly 0 instead of ~e^-100;
- sides that are not multiples of M raise an error instead of being padded (the official code
  asserts, Hugging Face's port pads); windows are square.
"""

from __future__ import annotations

import torch

__all__ = [
    "window_partition", "window_reverse", "cyclic_shift", "shifted_window_regions", "shifted_window_mask",
    "relative_position_index",
]


def check_windows(height: int, width: int, window_size: int, shift: int = 0, who: str = "windows") -> None:
    """Raise ValueError unless an H x W map splits into whole M x M windows and 0 <= shift < M."""
    if window_size < 1:
        raise ValueError(f"{who}: window_size must be at least 1, got {window_size}")
    if height % window_size or width % window_size:
        raise ValueError(
            f"{who}: a {height} x {width} feature map does not split into whole {window_size} x {window_size} "
            f"windows (H and W must be multiples of window_size={window_size}); pad the map or pick another window"
        )
    if not 0 <= shift < window_size:
        raise ValueError(f"{who}: the shift must satisfy 0 <= shift < window_size={window_size}, got shift={shift}")


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a channels-last map into M x M windows, image by image, windows in row-major order.

    Shapes: x (B, H, W, C) -> (B * nW, M, M, C), nW = (H / M) (W / M)
    """
    if x.ndim != 4:
        raise ValueError(f"window_partition expects a channels-last map (B, H, W, C), got shape {tuple(x.shape)}")
    B, H, W, C = x.shape
    M = window_size
    check_windows(H, W, M, who="window_partition")
    x = x.view(B, H // M, M, W // M, M, C)  # (B, H, W, C) -> (B, H/M, M, W/M, M, C): split each side
    x = x.permute(0, 1, 3, 2, 4, 5)  # -> (B, H/M, W/M, M, M, C): the two window indices first
    return x.reshape(B * (H // M) * (W // M), M, M, C)  # -> (B * nW, M, M, C); copies


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Put windows back into maps: the inverse of window_partition.

    Shapes: windows (B * nW, M, M, C) -> (B, H, W, C)
    """
    M = window_size
    check_windows(height, width, M, who="window_reverse")
    num_windows = (height // M) * (width // M)
    if windows.ndim != 4 or windows.shape[1:3] != (M, M) or windows.shape[0] % num_windows:
        raise ValueError(f"window_reverse expects (B * {num_windows}, {M}, {M}, C) windows of a {height} x {width} "
                         f"map, got shape {tuple(windows.shape)}")
    B, C = windows.shape[0] // num_windows, windows.shape[-1]
    x = windows.view(B, height // M, width // M, M, M, C)  # (B * nW, M, M, C) -> (B, H/M, W/M, M, M, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # -> (B, H/M, M, W/M, M, C): rows of windows, then rows inside
    return x.reshape(B, height, width, C)  # -> (B, H, W, C); copies


def cyclic_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Roll a (B, H, W, C) map up and left by `shift` tokens: token (i, j) moves to (i - s, j - s) mod (H, W).

    cyclic_shift(x, -s) rolls it back. Shapes: x (B, H, W, C) -> (B, H, W, C)
    """
    return torch.roll(x, shifts=(-shift, -shift), dims=(1, 2)) if shift else x


def shifted_window_regions(height: int, width: int, window_size: int, shift: int, device=None) -> torch.Tensor:
    """The official code's labels 0..8 for the nine regions of the rolled map, row band * 3 + column band.

    Along each axis of length n the bands are [0, n - M), [n - M, n - s) and [n - s, n): the tokens
    the roll brought around from the start of the axis sit in the last band.

    Shapes: -> (H, W) long
    """
    M, s = window_size, shift
    check_windows(height, width, M, s, who="shifted_window_regions")
    regions = torch.zeros(height, width, dtype=torch.long, device=device)

    def bands(n: int) -> tuple[slice, ...]:  # positive bounds: the official slice(-s, None) means "all" for s = 0
        return slice(0, n - M), slice(n - M, n - s), slice(n - s, n)

    label = 0
    for rows in bands(height):
        for cols in bands(width):
            regions[rows, cols] = label
            label += 1
    return regions


def shifted_window_mask(height: int, width: int, window_size: int, shift: int, device=None) -> torch.Tensor:
    """Which pairs of tokens in each window of the rolled map may attend: True iff same region.

    With shift = 0 nothing was torn apart and the mask is all True.

    Shapes: -> (nW, M * M, M * M) bool, windows in window_partition's order
    """
    M = window_size
    regions = shifted_window_regions(height, width, M, shift, device)  # (H, W)
    labels = window_partition(regions[None, :, :, None], M).view(-1, M * M)  # (1, H, W, 1) -> (nW, M, M, 1) -> (nW, N)
    return labels[:, :, None] == labels[:, None, :]  # (nW, N, 1) == (nW, 1, N) -> (nW, N, N)


def relative_position_index(window_size: int, device=None) -> torch.Tensor:
    """For tokens i and j of an M x M window, the row of the bias table for their offset (dy, dx) = i - j.

    index = (dy + M - 1) * (2M - 1) + (dx + M - 1), in [0, (2M - 1)^2), tokens numbered row-major.

    Shapes: -> (M * M, M * M) long
    """
    M = window_size
    if M < 1:
        raise ValueError(f"relative_position_index: window_size must be at least 1, got {M}")
    rows, cols = torch.meshgrid(torch.arange(M, device=device), torch.arange(M, device=device), indexing="ij")
    coords = torch.stack((rows.flatten(), cols.flatten()))  # (2, N): (row, column) of each token
    offsets = coords[:, :, None] - coords[:, None, :]  # (2, N, 1) - (2, 1, N) -> (2, N, N): i minus j
    return (offsets[0] + M - 1) * (2 * M - 1) + (offsets[1] + M - 1)  # (N, N), each offset shifted to >= 0
