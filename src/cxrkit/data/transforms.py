"""Preprocessing (one definition, stored in the model card) and batch augmentation.

:class:`Preprocessing` turns a decoded gray image into the model's input. Training caches
its uint8 output; prediction, evaluation and serving apply the same object read back from
the run's model card, so no command can disagree with another about pixels.

:class:`BatchAugment` works on whole batches with torch ops (affine warp, brightness,
contrast, gamma), so it runs on the GPU when there is one and costs little on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

CONTRAST_MODES = ("percentile", "none")


@dataclass(frozen=True)
class Preprocessing:
    """Gray image -> square ``input_size`` image, contrast-normalised, then (x - mean) / std.

    ``contrast="percentile"`` stretches the 1st..99th intensity percentiles to [0, 1]: sources
    differ in exposure and windowing, and a model should not learn the source from them.
    Images are resized to a square without cropping (most public CXRs are already square).
    """

    input_size: int = 224
    mean: float = 0.5
    std: float = 0.5
    contrast: str = "percentile"
    channels: int = 1

    def __post_init__(self):
        if self.contrast not in CONTRAST_MODES:
            raise ValueError(f"contrast must be one of {CONTRAST_MODES}, got {self.contrast!r}")
        if self.input_size < 16:
            raise ValueError(f"input_size {self.input_size} is too small")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_uint8(self, gray: np.ndarray) -> np.ndarray:
        """Decoded image in [0, 1] -> (input_size, input_size) uint8, ready to cache."""
        g = np.asarray(gray, np.float32)
        if self.contrast == "percentile":
            lo, hi = np.percentile(g, (1, 99))
            g = (np.clip((g - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(g)).astype(np.float32)
        img = Image.fromarray(g, mode="F").resize((self.input_size, self.input_size), Image.BILINEAR)
        return np.clip(np.rint(np.asarray(img) * 255.0), 0, 255).astype(np.uint8)

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float batch (B, 1, H, W) -> the model's input."""
        if batch.dtype == torch.uint8:
            batch = batch.float().div_(255.0)
        return (batch - self.mean) / self.std

    def __call__(self, gray: np.ndarray) -> torch.Tensor:
        """One decoded image -> a (1, 1, S, S) normalised tensor."""
        return self.normalise(torch.from_numpy(self.to_uint8(gray))[None, None])


class BatchAugment(nn.Module):
    """Random affine warp and intensity changes for a float batch in [0, 1] (B, C, H, W).

    CXR-appropriate defaults: small rotation, scale and shift; brightness, contrast and
    gamma jitter; no flips (left/right anatomy and laterality markers matter).
    """

    def __init__(self, rotation: float = 10.0, scale: tuple[float, float] = (0.9, 1.1),
                 translate: float = 0.06, brightness: float = 0.1, contrast: float = 0.2,
                 gamma: float = 0.2):
        super().__init__()
        self.rotation, self.scale, self.translate = rotation, scale, translate
        self.brightness, self.contrast, self.gamma = brightness, contrast, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, dev = x.shape[0], x.device

        def uniform(lo, hi):
            return torch.empty(b, device=dev).uniform_(lo, hi)

        angle = uniform(-self.rotation, self.rotation) * (math.pi / 180)
        s = 1.0 / uniform(*self.scale)
        cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
        tx, ty = uniform(-self.translate, self.translate) * 2, uniform(-self.translate, self.translate) * 2
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        gamma = torch.exp(uniform(-self.gamma, self.gamma)).view(b, 1, 1, 1)
        x = x.clamp(0, 1).pow(gamma)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * uniform(1 - self.contrast, 1 + self.contrast).view(b, 1, 1, 1) + mean
        x = x + uniform(-self.brightness, self.brightness).view(b, 1, 1, 1)
        return x.clamp(0, 1)
