"""Preprocessing (one definition, stored in the model card) and batch augmentation.

:class:`Preprocessing` turns a decoded gray image into the model's input. Training caches
its uint8 output; prediction, evaluation and serving apply the same object read back from
the run's model card, so no command can disagree with another about pixels.

:class:`BatchAugment` works on whole batches with torch ops (affine warp, brightness,
contrast, gamma), so it runs on the GPU when there is one and costs little on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from .pipeline import ROI_OK

CONTRAST_MODES = ("percentile", "none", "equalize", "clahe")


@dataclass(frozen=True)
class Preprocessing:
    """Gray image -> square ``input_size`` image, contrast-normalised, then (x - mean) / std.

    ``contrast="percentile"`` stretches the 1st..99th intensity percentiles to [0, 1]: sources
    differ in exposure and windowing, and a model should not learn the source from them.
    ``"equalize"`` (global histogram equalisation) and ``"clahe"`` (contrast-limited adaptive
    equalisation, clip 2.0 on an 8x8 tile grid) go further: after the stretch and the resize,
    so the tiles cover the same anatomy whatever the source's resolution (resolution is itself
    a trace of the source).
    Images are resized to a square without cropping (most public CXRs are already square).
    It is the chain without a ROI step of :class:`cxrkit.data.pipeline.Pipeline`.
    """

    roi: ClassVar[str] = "none"
    batched: ClassVar[bool] = False  # pure numpy: caches may fan out to worker processes
    lung_run_dir: ClassVar[str | None] = None

    input_size: int = 224
    mean: float = 0.5
    std: float = 0.5
    contrast: str = "percentile"
    channels: int = 1

    def __post_init__(self):
        if self.contrast not in CONTRAST_MODES:
            raise UsageError(f"contrast must be one of {CONTRAST_MODES}, got {self.contrast!r}")
        if self.input_size < 16:
            raise UsageError(f"input_size {self.input_size} is too small")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def to_uint8(self, gray: np.ndarray) -> np.ndarray:
        """Decoded gray image -> (input_size, input_size) uint8, ready to cache.

        ``gray`` is what :func:`~cxrkit.data.images.read_gray` returns: uint8, uint16, or float
        in [0, 1] (treated as 16-bit levels). Percentiles come from a level histogram and the
        stretch is a lookup table, so the same picture gives the same pixels in any of these
        forms, and an 8-bit image costs a fraction of a millisecond before the resize.
        """
        levels, top = _levels(gray)
        if self.contrast != "none":
            lo, hi = _histogram_percentiles(levels, top + 1, (0.01, 0.99))
        else:
            lo, hi = 0, top
        ramp = np.arange(top + 1, dtype=np.float64)
        lut = np.clip((ramp - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(ramp)
        stretched = np.take(np.rint(lut * 255.0).astype(np.uint8), levels)
        size = (self.input_size, self.input_size)
        out = np.array(Image.fromarray(stretched).resize(size, Image.BILINEAR))  # writable
        if self.contrast == "equalize":
            return equalize(out)
        if self.contrast == "clahe":
            return clahe(out)
        return out

    def to_uint8_many(self, grays: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        size = self.input_size
        pixels = [self.to_uint8(g) for g in grays]
        return (np.stack(pixels) if pixels else np.zeros((0, size, size), np.uint8)), [ROI_OK] * len(pixels)

    def view(self, gray: np.ndarray) -> np.ndarray:
        return gray

    def roi_settings(self) -> dict:
        return {}

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float batch (B, 1, H, W) -> the model's input."""
        if batch.dtype == torch.uint8:
            batch = batch.float().div_(255.0)
        return (batch - self.mean) / self.std

    def __call__(self, gray: np.ndarray) -> torch.Tensor:
        """One decoded image -> a (1, 1, S, S) normalised tensor."""
        return self.normalise(torch.from_numpy(self.to_uint8(gray))[None, None])


def equalize(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of a uint8 image (a lookup table from its CDF)."""
    cdf = np.bincount(image.ravel(), minlength=256).cumsum()
    first = cdf[np.nonzero(cdf)[0][0]]
    if cdf[-1] == first:  # a flat image stays as it is
        return image.copy()
    lut = np.clip(np.rint((cdf - first) * 255.0 / (cdf[-1] - first)), 0, 255).astype(np.uint8)
    return lut[image]


def clahe(image: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV's, as radiology papers use it)."""
    import cv2  # opencv comes with grad-cam; imported here to keep `import cxrkit.data` light

    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(np.ascontiguousarray(image))


def _levels(gray: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer gray levels and the top level: uint8/uint16 as they are, floats as 16-bit."""
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise UsageError(f"expected a 2-D gray image, got shape {gray.shape}")
    if gray.dtype == np.uint8:
        return gray, 255
    if gray.dtype == np.uint16:
        return gray, 65535
    return np.rint(np.clip(gray, 0, 1) * 65535.0).astype(np.uint16), 65535


def _histogram_percentiles(levels: np.ndarray, n_levels: int, quantiles: tuple[float, ...]) -> list[int]:
    """The levels at sorted positions ``floor(q * (n - 1))`` (numpy's "lower" percentile)."""
    cumulative = np.bincount(levels.ravel(), minlength=n_levels).cumsum()
    ranks = [int(q * (cumulative[-1] - 1)) for q in quantiles]
    return [int(level) for level in np.searchsorted(cumulative, ranks, side="right")]


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, height, width), align_corners=False)`` as one 2-D matmul.

    Same numbers (tested), returned as a strided view that ``grid_sample`` reads as it is.
    On this 2-core CPU (batch 32, 224 px) grid + sample took ~50 ms instead of ~100 ms with
    torch's version, of a ~1.1 s lite0 training step.
    """
    opts = dict(device=theta.device, dtype=theta.dtype)
    xs = (torch.arange(width, **opts) * 2 + 1) / width - 1  # pixel centres in [-1, 1]
    ys = (torch.arange(height, **opts) * 2 + 1) / height - 1
    base = torch.stack(
        [xs.expand(height, width), ys[:, None].expand(height, width), torch.ones(height, width, **opts)]
    ).view(3, height * width)
    b = theta.shape[0]
    return (theta.reshape(b * 2, 3) @ base).view(b, 2, height, width).permute(0, 2, 3, 1)


class BatchAugment(nn.Module):
    """Random affine warp and intensity changes for a float batch in [0, 1] (B, C, H, W).

    CXR-appropriate defaults: small rotation, scale and shift; brightness, contrast and
    gamma jitter; no flips (left/right anatomy and laterality markers matter).
    """

    def __init__(
        self,
        rotation: float = 10.0,
        scale: tuple[float, float] = (0.9, 1.1),
        translate: float = 0.06,
        brightness: float = 0.1,
        contrast: float = 0.2,
        gamma: float = 0.2,
        aspect: float = 0.0,
    ):
        super().__init__()
        self.rotation, self.scale, self.translate = rotation, scale, translate
        self.brightness, self.contrast, self.gamma = brightness, contrast, gamma
        self.aspect = aspect  # x/y scale ratio jitter, log-uniform in [-aspect, aspect]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, dev = x.shape[0], x.device

        def uniform(lo, hi):
            return torch.empty(b, device=dev).uniform_(lo, hi)

        angle = uniform(-self.rotation, self.rotation) * (math.pi / 180)
        s = 1.0 / uniform(*self.scale)
        r = torch.exp(uniform(-self.aspect, self.aspect) / 2) if self.aspect else torch.ones(b, device=dev)
        sx, sy = s * r, s / r
        cos, sin = torch.cos(angle), torch.sin(angle)
        tx, ty = uniform(-self.translate, self.translate) * 2, uniform(-self.translate, self.translate) * 2
        theta = torch.stack([torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1)
        grid = affine_grid(theta.to(x.dtype), x.shape[-2], x.shape[-1])
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        gamma = torch.exp(uniform(-self.gamma, self.gamma)).view(b, 1, 1, 1)
        x = x.clamp(0, 1).pow(gamma)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * uniform(1 - self.contrast, 1 + self.contrast).view(b, 1, 1, 1) + mean
        x = x + uniform(-self.brightness, self.brightness).view(b, 1, 1, 1)
        return x.clamp(0, 1)
