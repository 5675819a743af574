"""Acquisition-robust augmentation: each trace does what it says, on synthetic batches."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cxrkit.data.acquisition import AcquisitionAugment, blur, jpeg_compress, make_augment
from cxrkit.data.transforms import BatchAugment
from cxrkit.errors import UsageError


def _batch(b=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    lobes = ((((xx + 0.45) / 0.3) ** 2 + (yy / 0.6) ** 2) < 1) | ((((xx - 0.45) / 0.3) ** 2 + (yy / 0.6) ** 2) < 1)
    base = 0.8 - 0.5 * lobes.float()
    return (base + 0.05 * torch.rand(b, 1, size, size, generator=g)).clamp(0, 1)


def test_jpeg_matches_a_real_encoder_closely():
    x = _batch(1, 64)
    ours = jpeg_compress(x, torch.tensor([40.0]))[0, 0].numpy()
    buf = io.BytesIO()
    Image.fromarray(np.rint(x[0, 0].numpy() * 255).astype(np.uint8)).save(buf, "JPEG", quality=40)
    pil = np.asarray(Image.open(buf), np.float32) / 255
    # same lossy step (PIL also does chroma/entropy coding and its own rounding): close, not equal
    assert np.abs(ours - pil).mean() < 0.01
    assert np.abs(ours - x[0, 0].numpy()).mean() > 0.002  # and it did change the image


def test_jpeg_quality_orders_the_error_and_odd_sides_work():
    x = _batch(2, 60)
    err = [float((jpeg_compress(x, torch.tensor([q, q])) - x).abs().mean()) for q in (20.0, 50.0, 95.0)]
    assert err[0] > err[1] > err[2]
    assert jpeg_compress(x, torch.tensor([50.0, 50.0])).shape == x.shape


def test_blur_keeps_mean_and_smooths():
    x = torch.rand(2, 1, 32, 32)
    y = blur(x)
    assert torch.allclose(y.mean(), x.mean(), atol=0.02)
    assert y.diff(dim=-1).abs().mean() < 0.5 * x.diff(dim=-1).abs().mean()


def test_acquisition_augment_changes_chosen_images_only_in_range():
    x = _batch(8)
    torch.manual_seed(0)
    y = AcquisitionAugment(p=1.0)(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert ((y - x).abs().flatten(1).mean(1) > 1e-3).all()
    assert torch.equal(AcquisitionAugment(p=0.0)(x), x)


def test_robust_is_basic_plus_traces_and_names_are_checked():
    assert isinstance(make_augment("basic"), BatchAugment)
    assert make_augment("none") is None
    robust = make_augment("robust")
    assert isinstance(robust[1], AcquisitionAugment) and robust[0].aspect > 0
    with pytest.raises(UsageError, match="augment must be one of"):
        make_augment("strong")


def test_aspect_jitter_stretches_one_axis():
    x = _batch(1, 64)
    still = dict(rotation=0, translate=0, brightness=0, contrast=0, gamma=0, scale=(1, 1))
    torch.manual_seed(1)
    y = BatchAugment(aspect=0.6, **still)(x)
    assert not torch.allclose(y, x, atol=1e-3)
    torch.manual_seed(1)
    assert torch.allclose(BatchAugment(aspect=0.0, **still)(x), x, atol=1e-5)


@pytest.mark.parametrize("mode", ["equalize", "clahe"])
def test_equalising_contrast_modes_flatten_the_histogram_the_same_for_any_bit_depth(mode):
    from cxrkit.data.transforms import Preprocessing

    rng = np.random.default_rng(0)
    gray = np.clip(rng.normal(90, 12, (300, 260)), 0, 255).astype(np.uint8)  # low-contrast film
    pre = Preprocessing(input_size=64, contrast=mode)
    out = pre.to_uint8(gray)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    base = Preprocessing(input_size=64).to_uint8(gray)
    # flatter histogram than the stretch alone: more of the 0..255 range in use
    assert np.percentile(out, 90) - np.percentile(out, 10) > np.percentile(base, 90) - np.percentile(base, 10)
    # a 16-bit copy of the same picture gives the same pixels (stretch first, then equalise)
    assert np.abs(pre.to_uint8(gray.astype(np.uint16) * 257).astype(int) - out).max() <= 1


def test_train_config_offers_exactly_the_augments_make_augment_builds():
    # config.py keeps its own list (no torch import, so --help stays instant); this keeps the two in step
    import dataclasses

    from cxrkit.data.acquisition import AUGMENTS
    from cxrkit.training.config import TrainConfig

    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == "augment")
    assert tuple(field.metadata["choices"]) == AUGMENTS
