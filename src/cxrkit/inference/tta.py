"""Test-time augmentation: a fixed, documented set of views of the preprocessed uint8 batch.

Why: a model that leans on where the lungs sit in the frame or on a source's exact contrast
answers differently for a slightly shifted or re-windowed copy of the same radiograph;
averaging over such copies damps that without retraining. The views act on the (B, S, S)
uint8 images the Predictor feeds its backend, so they work unchanged on the torch and ONNX
backends, and are deterministic (no randomness: the same image gets the same answer).

``standard`` (7 views, ``VIEWS``): identity; shifts by +-4% of the side along both axes
(edges replicated); zooms 0.92 and 1.08 about the centre (bilinear, edges replicated); contrast
x0.85 and x1.15 around each image's mean. Probabilities, each after the run's temperature, are
averaged over the views (:func:`average_views`).

Cost: one forward pass per view. Measured with ``nice -n 10 .venv/bin/python
bench/tta_ensemble_speed.py`` (32 images, 3 rounds; tf_efficientnet_lite0 at 224 px, random
weights, torch fp32, this shared 2-core CPU at load ~5): plain 11.0 img/s, ``standard`` 1.5
img/s, i.e. 6.9x the time (building the views included); docs/results/tta_ensemble_speed.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError

TTA_MODES = ("none", "standard")
SHIFT = 0.04  # of the side
ZOOMS = (0.92, 1.08)
CONTRASTS = (0.85, 1.15)  # +-15% around the image mean
VIEWS = (
    "identity",
    f"shift +{SHIFT:.0%}",
    f"shift -{SHIFT:.0%}",
    *(f"zoom {z:g}" for z in ZOOMS),
    *(f"contrast x{c:g}" for c in CONTRASTS),
)


def check_tta(mode: str) -> str:
    if mode not in TTA_MODES:
        raise UsageError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    return mode


def view_names(mode: str) -> list[str]:
    return list(VIEWS) if check_tta(mode) == "standard" else ["identity"]


def describe(mode: str) -> dict:
    """What outputs record: ``{"tta": "none"|"standard", "tta_views": [...]}``."""
    return {"tta": mode, "tta_views": view_names(mode)}


def shift(images: np.ndarray, d: int) -> np.ndarray:
    """Content moved by ``d`` px down and right (negative: up and left), edges replicated."""
    if d == 0:
        return images
    a = abs(d)
    padded = np.pad(images, ((0, 0), (a, a), (a, a)), mode="edge")
    s0, s1 = images.shape[1], images.shape[2]
    start = a - d
    return np.ascontiguousarray(padded[:, start : start + s0, start : start + s1])


def zoom(images: np.ndarray, factor: float) -> np.ndarray:
    """Zoom about the centre: > 1 crops the enlarged image, < 1 pads the shrunk one (edges replicated)."""
    s = images.shape[-1]
    n = max(1, round(s * factor))
    x = torch.from_numpy(np.array(images, np.uint8)).float()[:, None]  # a copy: memmaps are read-only
    x = F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False, antialias=factor < 1)
    if n >= s:
        o = (n - s) // 2
        x = x[:, :, o : o + s, o : o + s]
    else:
        lo = (s - n) // 2
        x = F.pad(x, (lo, s - n - lo, lo, s - n - lo), mode="replicate")
    return x[:, 0].round_().clamp_(0, 255).to(torch.uint8).numpy()


def contrast(images: np.ndarray, factor: float) -> np.ndarray:
    """Stretch (> 1) or flatten (< 1) each image's levels around its own mean."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return np.clip(np.rint(mean + (x - mean) * factor), 0, 255).astype(np.uint8)


def views(images: np.ndarray, mode: str) -> list[np.ndarray]:
    """The batch's views for ``mode`` (uint8, same shape), in the order of :func:`view_names`."""
    if check_tta(mode) == "none":
        return [images]
    images = np.asarray(images)
    d = max(1, round(SHIFT * images.shape[-1]))
    return [
        images,
        shift(images, d),
        shift(images, -d),
        *(zoom(images, z) for z in ZOOMS),
        *(contrast(images, c) for c in CONTRASTS),
    ]


def average_views(proba: Callable[[np.ndarray], np.ndarray], images: np.ndarray, mode: str) -> np.ndarray:
    """Mean of ``proba`` over the views; with ``none`` exactly ``proba(images)``."""
    if mode == "none":
        return proba(images)
    return np.mean([proba(v) for v in views(images, mode)], axis=0, dtype=np.float64).astype(np.float32)
