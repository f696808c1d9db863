"""tinycore.images: the classic digits split, its normalisation, random shifts and batches."""

import numpy as np
import pytest
import torch

from tinycore.images import DigitsSplit, affine_warp, image_batches, load_digits_split, random_affine, random_shift

sklearn = pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    return load_digits_split()


def test_the_split_is_scikit_learns_gallery_split(split):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(digits.images, digits.target, test_size=0.5, shuffle=False)
    assert split.x_train.shape == (898, 1, 8, 8) and split.x_test.shape == (899, 1, 8, 8)
    assert split.y_train.shape == (898,) and split.y_test.shape == (899,)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.long
    assert np.array_equal(split.y_train.numpy(), y_train) and np.array_equal(split.y_test.numpy(), y_test)
    raw_train = split.x_train[:, 0] * split.std + split.mean  # undo the normalisation
    raw_test = split.x_test[:, 0] * split.std + split.mean
    assert np.allclose(raw_train.numpy(), x_train, atol=1e-4) and np.allclose(raw_test.numpy(), x_test, atol=1e-4)


def test_normalised_with_the_training_statistics_only(split):
    from sklearn.datasets import load_digits

    first_half = load_digits().images[:898]
    assert split.mean == pytest.approx(first_half.mean(), rel=1e-5)
    assert split.std == pytest.approx(first_half.std(ddof=1), rel=1e-5)
    assert abs(float(split.x_train.mean())) < 1e-5 and float(split.x_train.std()) == pytest.approx(1.0, abs=1e-5)
    assert abs(float(split.x_test.mean())) > 1e-3  # the test half has its own statistics, not forced to 0 and 1
    assert set(split.y_train.tolist()) == set(range(10)) == set(split.y_test.tolist())
    assert "train=(898, 1, 8, 8)" in repr(split)


def _shift(image, dy, dx, fill):
    """The definition: out[i, j] = image[i - dy, j - dx], or fill outside the image."""
    C, H, W = image.shape
    out = torch.full_like(image, fill)
    for i in range(H):
        for j in range(W):
            if 0 <= i - dy < H and 0 <= j - dx < W:
                out[:, i, j] = image[:, i - dy, j - dx]
    return out


@pytest.mark.parametrize("max_shift, fill", [(1, 0.0), (2, -0.5)])
def test_each_image_is_an_exact_shift_by_at_most_max_shift(max_shift, fill):
    x = torch.randn(30, 2, 5, 6, generator=torch.Generator().manual_seed(0))
    out = random_shift(x, max_shift, generator=torch.Generator().manual_seed(1), fill=fill)
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = range(-max_shift, max_shift + 1)
    seen = set()
    for image, shifted in zip(x, out):
        matches = [(dy, dx) for dy in offsets for dx in offsets if torch.equal(shifted, _shift(image, dy, dx, fill))]
        assert len(matches) == 1, matches
        seen.add(matches[0])
    assert len(seen) > (2 * max_shift + 1) ** 2 // 2  # the offsets vary from image to image


def test_random_shift_is_reproducible_and_leaves_its_input_alone():
    x = torch.randn(8, 1, 8, 8)
    before = x.clone()
    a = random_shift(x, 1, generator=torch.Generator().manual_seed(5))
    b = random_shift(x, 1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(x, before)
    assert torch.equal(random_shift(x, 0), x)


def test_random_shift_errors():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), but has shape \(8, 8\)"):
        random_shift(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="non-negative int"):
        random_shift(torch.zeros(1, 1, 8, 8), -1)
    with pytest.raises(ValueError, match="max_shift=8 would move a 8x8 image out of view"):
        random_shift(torch.zeros(1, 1, 8, 8), 8)
    with pytest.raises(TypeError, match="torch.Tensor"):
        random_shift(np.zeros((1, 1, 8, 8)))


def _params(n, degrees=0.0, scale=1.0, shift=(0.0, 0.0)):
    return torch.full((n,), float(degrees)), torch.full((n,), float(scale)), torch.tensor([shift] * n, dtype=torch.float32)


def test_affine_warp_identity_whole_pixel_shifts_and_quarter_turns():
    x = torch.randn(3, 2, 5, 7, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(affine_warp(x, *_params(3)), x, rtol=0, atol=1e-6)
    for dy, dx in [(1, -2), (-1, 0), (2, 3)]:
        want = torch.stack([_shift(image, dy, dx, -0.7) for image in x])
        torch.testing.assert_close(affine_warp(x, *_params(3, shift=(dy, dx)), fill=-0.7), want, rtol=0, atol=1e-5)
    square = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(affine_warp(square, *_params(2, degrees=90)), torch.rot90(square, 1, (2, 3)),
                               rtol=0, atol=1e-5)  # counter-clockwise as displayed
    torch.testing.assert_close(affine_warp(x, *_params(3, degrees=180)), x.flip(2, 3), rtol=0, atol=1e-5)


def test_affine_warp_scales_about_the_centre():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3:5, 3:5] = 1.0  # a 2 x 2 square at the centre
    zoomed = affine_warp(x, *_params(1, scale=2.0))
    # output pixel j reads the input at 3.5 + (j - 3.5) / 2, interpolated bilinearly
    profile = torch.tensor([0.0, 0.25, 0.75, 1.0, 1.0, 0.75, 0.25, 0.0])
    torch.testing.assert_close(zoomed[0, 0], profile[:, None] * profile[None, :], rtol=0, atol=1e-6)
    assert torch.equal(zoomed, zoomed.flip(2)) and torch.equal(zoomed, zoomed.flip(3))  # still centred


def test_random_affine_properties_and_errors():
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(random_affine(x, 0.0, 0.0, 0.0), x, rtol=0, atol=1e-6)
    a = random_affine(x, generator=torch.Generator().manual_seed(5), fill=-1.0)
    assert torch.equal(a, random_affine(x, generator=torch.Generator().manual_seed(5), fill=-1.0))
    assert a.shape == x.shape and not torch.allclose(a, x, atol=1e-3)
    with pytest.raises(ValueError, match="0 <= max_scale < 1"):
        random_affine(x, max_scale=1.5)
    with pytest.raises(ValueError, match=r"expected degrees \(16,\)"):
        affine_warp(x, *_params(15))


def test_image_batches_pair_each_image_with_its_label(split):
    sample = image_batches(split.x_train, split.y_train, 32, "cpu", augment=False)
    xb, yb = sample(torch.Generator().manual_seed(0))
    assert xb.shape == (32, 1, 8, 8) and yb.shape == (32,) and yb.dtype == torch.long
    flat = split.x_train.flatten(1)  # (898, 64)
    for image, label in zip(xb, yb):
        rows = (flat == image.flatten()).all(dim=1).nonzero().flatten()
        assert len(rows) >= 1 and label in split.y_train[rows]
    again = sample(torch.Generator().manual_seed(0))
    assert torch.equal(again[0], xb) and torch.equal(again[1], yb)


def test_augmented_batches_fill_the_border_with_the_background(split):
    sample = image_batches(split.x_train, split.y_train, 64, "cpu", augment=True)
    xb, _ = sample(torch.Generator().manual_seed(1))
    background = float(split.x_train.min())  # raw pixel value 0
    assert background == pytest.approx(-split.mean / split.std)
    assert float(xb.min()) == pytest.approx(background)
    plain, _ = image_batches(split.x_train, split.y_train, 64, "cpu", augment=False)(torch.Generator().manual_seed(1))
    assert not torch.equal(xb, plain)


def test_image_batches_errors(split):
    with pytest.raises(ValueError, match="one label per image"):
        image_batches(split.x_train, split.y_test, 8, "cpu")
    with pytest.raises(ValueError, match="batch_size should be a positive int"):
        image_batches(split.x_train, split.y_train, 0, "cpu")
    with pytest.raises(TypeError, match="augment should be True, False or a function"):
        image_batches(split.x_train, split.y_train, 8, "cpu", augment="affine")


def test_image_batches_apply_an_augmentation_function(split):
    calls = []

    def flip(xb, generator):
        calls.append(generator)
        return xb.flip(3)

    g = torch.Generator().manual_seed(6)
    xb, yb = image_batches(split.x_train, split.y_train, 16, "cpu", augment=flip)(g)
    plain, _ = image_batches(split.x_train, split.y_train, 16, "cpu", augment=False)(torch.Generator().manual_seed(6))
    assert calls == [g] and torch.equal(xb, plain.flip(3))
