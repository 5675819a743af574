"""Acquisition-robust augmentation: what differs between sources that is not disease.

The public CXR sources differ in how the film became a PNG: Kermany copies were JPEG-compressed
and squashed to a square, Radiography Database copies are 224 px PNGs (down-sampled, then
up-sampled here), ieee8023 images come from full-resolution papers. A CNN learns these traces
("who took the film") as readily as it learns opacities. :class:`AcquisitionAugment` puts the
same traces on every training image at random, so they stop telling classes apart:

- **blur or sharpen** (unsharp mask): a Gaussian-like blur mixed per image with a random
  signed weight (positive blurs, negative sharpens);
- **down-then-up resampling** to 45-85% of the side (the 224 px RadDB copies);
- **JPEG re-compression** at quality 25-90: an 8x8 block DCT, the standard luminance table
  scaled per image, rounding, inverse DCT (the Kermany copies), done as batched matmuls;
- **noise**: Gaussian plus signal-dependent (Poisson-like, sigma ~ sqrt(intensity)).

Each runs on a random subset of the batch (``p`` each). Everything is batched torch on the
device, like :class:`~cxrkit.data.transforms.BatchAugment`. Measured with one thread on the
loaded 2-core host (``bench/augment_speed.py``, 32 images at 224 px): basic 259 ms, robust
459 ms per batch, against ~1.1 s for a lite0 training step on two threads. Together with
BatchAugment's stronger "robust" settings (wider zoom, aspect, gamma and contrast) this is
``augment: robust`` (:func:`make_augment`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from .style import StyleMix
from .transforms import BatchAugment

# JPEG's standard luminance quantisation table (ITU T.81, Annex K), quality 50.
_JPEG_Q50 = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    """Orthonormal DCT-II matrix: ``D @ block @ D.T`` is the 2-D DCT of a block."""
    k = torch.arange(n, dtype=torch.float32)[:, None]
    i = torch.arange(n, dtype=torch.float32)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


def jpeg_quality_table(quality: torch.Tensor) -> torch.Tensor:
    """(B,) qualities 1..100 -> (B, 8, 8) quantisation tables (libjpeg's scaling rule)."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    return ((_JPEG_Q50.to(q.device)[None] * scale.view(-1, 1, 1) + 50) / 100).floor().clamp(min=1)


def jpeg_compress(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG's lossy step (8x8 DCT, quantise, inverse) on a [0, 1] batch (B, 1, H, W).

    No chroma or entropy coding (gray images; entropy coding is lossless). Every 8x8 block
    becomes a row of 64 and the 2-D DCT one (64, 64) matrix (``kron(D, D)``), so the whole
    batch is two GEMMs: 32 ms for 10 images at 224 px on one core, against 51 ms for batched
    8x8 matmuls and 79 ms for a stride-8 convolution. Sides that are not multiples of 8 are
    padded by replication and cropped back.
    """
    b, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    y = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    hh, ww = y.shape[-2:]
    d = _dct_matrix().to(x.device, x.dtype)
    k = torch.kron(d, d)
    blocks = (y * 255.0 - 128.0).reshape(b, c, hh // 8, 8, ww // 8, 8).permute(0, 1, 2, 4, 3, 5)
    coef = blocks.reshape(b, -1, 64) @ k.T
    table = jpeg_quality_table(quality).to(x.dtype).view(b, 1, 64)
    coef = torch.round(coef / table) * table
    out = (coef @ k).reshape(b, c, hh // 8, ww // 8, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(b, c, hh, ww)
    return ((out + 128.0) / 255.0)[..., :h, :w].clamp(0, 1)


def blur(x: torch.Tensor) -> torch.Tensor:
    """A Gaussian-like blur (sigma ~1.2 px): two 3x3 box filters (edges averaged over the image only).

    Box filters are pooling ops: cheaper on a CPU than a 2-D 1-channel convolution with a
    Gaussian kernel of the same width, which oneDNN does not vectorise well. kornia's separable
    7x7 Gaussian was 1.4x faster still (``docs/results/kornia_compare.md``), but this blur is
    under 0.5% of a training step, so the recipe the method table measured was kept.
    """
    for _ in range(2):
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return x


class AcquisitionAugment(nn.Module):
    """Blur/sharpen, down-up resampling, JPEG and noise on random images of a [0, 1] batch."""

    def __init__(
        self,
        p: float = 0.3,
        sharpen: float = 1.0,
        resample: tuple[float, float] = (0.45, 0.85),
        jpeg_quality: tuple[float, float] = (25.0, 90.0),
        noise: float = 0.03,
    ):
        super().__init__()
        self.p, self.sharpen = p, sharpen
        self.resample, self.jpeg_quality, self.noise = resample, jpeg_quality, noise

    def _chosen(self, b: int, dev) -> torch.Tensor:
        return torch.rand(b, device=dev) < self.p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, dev = x.shape[0], x.device
        x = x.clone()  # one copy; each step below writes its chosen images in place
        # blur (weight > 0) or unsharp-mask sharpen (weight < 0) of the chosen images
        pick = self._chosen(b, dev)
        if pick.any():
            weight = torch.empty(int(pick.sum()), device=dev).uniform_(-self.sharpen, 1.0).view(-1, 1, 1, 1)
            x[pick] = (x[pick] + weight * (blur(x[pick]) - x[pick])).clamp(0, 1)
        # down-then-up resampling, one factor for the chosen images of this batch
        pick = self._chosen(b, dev)
        if pick.any():
            f = float(torch.empty(1).uniform_(*self.resample))
            h, w = x.shape[-2:]
            small = F.interpolate(x[pick], size=(max(8, round(h * f)), max(8, round(w * f))), mode="area")
            x[pick] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        # JPEG re-compression at a random quality per image
        pick = self._chosen(b, dev)
        if pick.any():
            q = torch.empty(int(pick.sum()), device=dev).uniform_(*self.jpeg_quality)
            x[pick] = jpeg_compress(x[pick], q)
        # Gaussian + signal-dependent noise
        pick = self._chosen(b, dev)
        if pick.any() and self.noise > 0:
            # one draw with variance sigma^2 (0.25 + x): a Gaussian floor plus a Poisson-like part
            chosen = x[pick]
            sigma = torch.rand(len(chosen), 1, 1, 1, device=dev) * self.noise
            x[pick] = chosen + sigma * torch.randn_like(chosen) * (0.25 + chosen.clamp(min=0)).sqrt()
        return x.clamp(0, 1)


AUGMENTS = ("none", "basic", "robust", "robust-fourier", "robust-histogram")


def make_augment(name: str) -> nn.Module | None:
    """The training augmentation called ``name`` (config ``augment``); None for "none".

    - ``basic``: BatchAugment's defaults (rotation 10 deg, zoom 0.9-1.1, shift 6%, brightness,
      contrast and gamma jitter), the recipe until 0.1;
    - ``robust``: wider geometry (zoom 0.8-1.15, aspect +-10%, shift 8%: children's films are
      framed differently), stronger gamma/contrast (+-0.35), then :class:`AcquisitionAugment`;
    - ``robust-fourier`` / ``robust-histogram``: robust with :class:`~cxrkit.data.style.StyleMix`
      between the geometry and the traces (half the images take another image's amplitude
      spectrum or grey-level histogram).
    """
    if name == "none":
        return None
    if name == "basic":
        return BatchAugment()
    if name in AUGMENTS[2:]:
        geometry = BatchAugment(scale=(0.8, 1.15), translate=0.08, contrast=0.35, gamma=0.35, aspect=0.2)
        style = [StyleMix(name.split("-")[1])] if "-" in name else []
        return nn.Sequential(geometry, *style, AcquisitionAugment())
    raise UsageError(f"augment must be one of {', '.join(AUGMENTS)}, got {name!r}")
