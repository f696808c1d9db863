"""Image data for the vision chapters: scikit-learn's 8x8 handwritten digits, light augmentation, batches.

The digits (Alpaydin & Kaynak's UCI optical-recognition set, 1,797 grey 8x8 images with pixel
values 0..16) ship inside scikit-learn, so nothing is downloaded. The split is the classic one of
scikit-learn's gallery example "Recognizing hand-written digits": the first half (898 images)
trains, the second half (899) tests, with no shuffling. The test half was written partly by
other people than the training half, which makes it harder than a random split.

Images are normalised with one mean and one standard deviation measured on the training pixels
only, so nothing about the test set leaks into training.

Two light augmentations: `random_shift` moves each image by whole pixels, `random_affine` rotates,
scales and moves it by fractions of a pixel (bilinear interpolation, as torchvision's RandomAffine).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["DigitsSplit", "load_digits_split", "random_shift", "affine_warp", "random_affine", "image_batches"]


@dataclass
class DigitsSplit:
    x_train: torch.Tensor  # (898, 1, 8, 8) float32, normalised
    y_train: torch.Tensor  # (898,) long, 0..9
    x_test: torch.Tensor  # (899, 1, 8, 8) float32, normalised with the training statistics
    y_test: torch.Tensor  # (899,) long
    mean: float  # of the training pixels, on the raw 0..16 scale
    std: float

    def __repr__(self) -> str:
        return (f"DigitsSplit(train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"mean={self.mean:.3f}, std={self.std:.3f})")


def load_digits_split() -> DigitsSplit:
    """The 1,797 digits as (N, 1, 8, 8) tensors: the first 898 train, the last 899 test.

    Equivalent to scikit-learn's `train_test_split(data, target, test_size=0.5, shuffle=False)`.
    """
    from sklearn.datasets import load_digits  # imported here: only the vision chapters need scikit-learn

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)  # (1797, 8, 8) -> (1797, 1, 8, 8)
    labels = torch.tensor(digits.target, dtype=torch.long)  # (1797,)
    n_train = len(images) // 2  # 898; the test half gets the extra image, as test_size=0.5 does
    raw_train, raw_test = images[:n_train], images[n_train:]
    mean, std = float(raw_train.mean()), float(raw_train.std())
    return DigitsSplit(
        x_train=(raw_train - mean) / std, y_train=labels[:n_train],
        x_test=(raw_test - mean) / std, y_test=labels[n_train:],
        mean=mean, std=std,
    )


def _check_images(x, what: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} should be a torch.Tensor of images (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{what} should be a batch of images (N, C, H, W), but has shape {tuple(x.shape)}")


def random_shift(x: torch.Tensor, max_shift: int = 1, generator: torch.Generator | None = None,
                 fill: float = 0.0) -> torch.Tensor:
    """Shift each image by its own random offset of -max_shift..max_shift pixels in each direction.

    x (N, C, H, W) -> (N, C, H, W). Pixels shifted in from outside take the value `fill` (0 by
    default; pass the background value of normalised images to keep their background uniform).
    """
    _check_images(x)
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"random_shift: max_shift should be a non-negative int, got {max_shift!r}")
    n, _, height, width = x.shape
    if max_shift >= min(height, width):
        raise ValueError(f"random_shift: max_shift={max_shift} would move a {height}x{width} image out of view; "
                         f"use at most {min(height, width) - 1}")
    if max_shift == 0:
        return x.clone()
    m = max_shift
    shifts = torch.randint(-m, m + 1, (n, 2), generator=generator).to(x.device)  # (N, 2): rows, columns
    padded = torch.nn.functional.pad(x, (m, m, m, m), value=fill)  # (N, C, H + 2m, W + 2m)
    rows = torch.arange(height, device=x.device)[None, :] + m - shifts[:, :1]  # (N, H) source rows
    cols = torch.arange(width, device=x.device)[None, :] + m - shifts[:, 1:]  # (N, W) source columns
    batch = torch.arange(n, device=x.device)[:, None, None]  # (N, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)


def affine_warp(x: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                fill: float = 0.0) -> torch.Tensor:
    """Rotate each image about its centre by degrees[n] (counter-clockwise as displayed, row 0 at the
    top), scale it by scale[n] and move it by shift[n] = (rows, columns) pixels, with bilinear
    interpolation; pixels from outside the image take the value `fill`.

    Shapes: x (N, C, H, W), degrees (N,), scale (N,), shift (N, 2) -> (N, C, H, W)
    """
    _check_images(x)
    n, _, height, width = x.shape
    if degrees.shape != (n,) or scale.shape != (n,) or shift.shape != (n, 2):
        raise ValueError(f"affine_warp: expected degrees ({n},), scale ({n},) and shift ({n}, 2), got "
                         f"{tuple(degrees.shape)}, {tuple(scale.shape)} and {tuple(shift.shape)}")
    angle = torch.deg2rad(degrees.to(x.dtype))  # (N,)
    cos, sin = torch.cos(angle) / scale.to(x.dtype), torch.sin(angle) / scale.to(x.dtype)  # (N,) each
    # Each output pixel (column u, row v), measured from the centre, reads the input at
    # (u cos - v sin, u sin + v cos) / scale - shift. affine_grid works in coordinates normalised to
    # [-1, 1] along each axis, hence the factors height / width for non-square images.
    theta = torch.stack([
        torch.stack([cos, -sin * height / width, -2 * shift[:, 1].to(x.dtype) / width], dim=1),
        torch.stack([sin * width / height, cos, -2 * shift[:, 0].to(x.dtype) / height], dim=1),
    ], dim=1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2): where each pixel reads
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def random_affine(x: torch.Tensor, max_degrees: float = 10.0, max_scale: float = 0.1, max_shift: float = 0.5,
                  generator: torch.Generator | None = None, fill: float = 0.0) -> torch.Tensor:
    """A random rotation in [-max_degrees, max_degrees], scale in [1 - max_scale, 1 + max_scale] and
    shift in [-max_shift, max_shift] pixels along each axis, drawn for each image (see affine_warp).

    Shapes: x (N, C, H, W) -> (N, C, H, W)
    """
    _check_images(x)
    if max_degrees < 0 or not 0 <= max_scale < 1 or max_shift < 0:
        raise ValueError(f"random_affine: need max_degrees >= 0, 0 <= max_scale < 1 and max_shift >= 0; got "
                         f"{max_degrees}, {max_scale} and {max_shift}")
    n = len(x)
    uniform = torch.rand(n, 4, generator=generator).to(x.device) * 2 - 1  # (N, 4) in [-1, 1)
    return affine_warp(x, uniform[:, 0] * max_degrees, 1 + uniform[:, 1] * max_scale, uniform[:, 2:] * max_shift, fill)


def image_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, device, augment=True, max_shift: int = 1):
    """A sampler for `tinycore.train`: generator -> (xb (B, C, H, W), yb (B,)) on `device`.

    Each batch draws `batch_size` images at random (with replacement). `augment`: True shifts each
    by up to `max_shift` pixels (random_shift), the shifted-in border taking the background value
    (the smallest pixel value of x, 0 on the raw scale); False leaves the images alone; a function
    `augment(xb, generator) -> xb` is applied to every batch (e.g. a random_affine).
    """
    _check_images(x)
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"image_batches: y should be a 1-D tensor with one label per image ({len(x)}), "
                         f"got {tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"image_batches: batch_size should be a positive int, got {batch_size!r}")
    if not (isinstance(augment, bool) or callable(augment)):
        raise TypeError(f"image_batches: augment should be True, False or a function (xb, generator) -> xb, "
                        f"got {type(augment).__name__}")
    background = float(x.min())

    def sample(generator: torch.Generator):
        idx = torch.randint(0, len(x), (batch_size,), generator=generator)  # (B,)
        xb, yb = x[idx], y[idx]  # (B, C, H, W), (B,)
        if augment is True:
            xb = random_shift(xb, max_shift, generator=generator, fill=background)
        elif augment is not False:
            xb = augment(xb, generator)
        return xb.to(device), yb.to(device)

    return sample
