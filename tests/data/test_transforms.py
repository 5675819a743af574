"""data.transforms: one preprocessing for every precision, batch augmentation that keeps its promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cxrkit.data.images import read_gray, read_image
from cxrkit.data.transforms import BatchAugment, Preprocessing


def _reference(gray01: np.ndarray, size: int) -> np.ndarray:
    """The documented recipe written plainly: 1st..99th percentile stretch, 8-bit, bilinear resize."""
    lo, hi = np.percentile(gray01.astype(np.float64), (1, 99), method="lower")
    stretched = np.rint(np.clip((gray01 - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(stretched).resize((size, size), Image.BILINEAR))


def test_percentile_stretch_matches_the_documented_recipe(synth_array):
    gray = synth_array(3, (80, 96))
    out = Preprocessing(input_size=48).to_uint8(gray)
    assert out.shape == (48, 48) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - _reference(gray / 255.0, 48)).max() <= 1
    assert out.min() == 0 and out.max() == 255  # the stretch fills the 8-bit range


def test_same_picture_gives_same_pixels_in_uint8_uint16_and_float(synth_array):
    u8 = synth_array(5, (70, 60))
    spec = Preprocessing(input_size=32)
    expected = spec.to_uint8(u8)
    np.testing.assert_array_equal(spec.to_uint8(u8.astype(np.uint16) * 257), expected)
    np.testing.assert_array_equal(spec.to_uint8(u8.astype(np.float32) / 255), expected)


def test_extreme_pixels_do_not_set_the_contrast(synth_array):
    # one hot pixel (a marker, a burnt-in label) must not compress the rest of the image
    gray = (synth_array(1, (100, 100)) // 2).astype(np.uint8)
    marked = gray.copy()
    marked[0, 0] = 255
    spec = Preprocessing(input_size=100)
    np.testing.assert_array_equal(spec.to_uint8(marked)[1:, 1:], spec.to_uint8(gray)[1:, 1:])


def test_contrast_none_keeps_levels_and_flat_image_is_black():
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    np.testing.assert_array_equal(Preprocessing(input_size=64, contrast="none").to_uint8(ramp), ramp)
    flat = np.full((20, 20), 0.4, np.float32)
    assert Preprocessing(input_size=16).to_uint8(flat).max() == 0


def test_read_gray_keeps_file_precision(make_image, synth_array):
    u8 = synth_array(2)
    assert read_gray(make_image("a.png", u8)).dtype == np.uint8
    u16 = u8.astype(np.uint16) * 257
    g16 = read_gray(make_image("b.png", u16))
    assert g16.dtype == np.uint16
    np.testing.assert_array_equal(g16, u16)
    np.testing.assert_allclose(read_image(make_image("c.png", u8)), u8 / 255.0, atol=1e-7)


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 3)), np.zeros(5)])
def test_to_uint8_refuses_non_2d(bad):
    with pytest.raises(ValueError, match="2-D"):
        Preprocessing().to_uint8(bad)


def test_normalise_uint8_and_float_agree():
    spec = Preprocessing(mean=0.5, std=0.25)
    u8 = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(spec.normalise(u8), spec.normalise(u8.float() / 255))
    assert spec.normalise(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)).max() == pytest.approx(2.0)


def test_batch_augment_changes_images_within_range_and_keeps_shape():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    y = BatchAugment()(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(x, y)
    # with every jitter off it is the identity (up to resampling on the same grid)
    still = BatchAugment(rotation=0, scale=(1, 1), translate=0, brightness=0, contrast=0, gamma=0)(x)
    torch.testing.assert_close(still, x, atol=1e-5, rtol=0)


def test_affine_grid_equals_torch():
    from torch.nn import functional as F

    from cxrkit.data.transforms import affine_grid

    theta = torch.randn(5, 2, 3)
    for h, w in ((7, 9), (32, 32)):
        torch.testing.assert_close(
            affine_grid(theta, h, w), F.affine_grid(theta, [5, 1, h, w], align_corners=False), atol=1e-5, rtol=1e-5
        )
