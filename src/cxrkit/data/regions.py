"""The film's border band, and occlusion: where text, markers and arms sit, off the lungs.

The audit hides regions (occlusion tests) and the Grad-CAM summary measures how much of a
map's energy falls on the border. Where the lungs are is :mod:`cxrkit.lungs.locate`'s answer.
"""

from __future__ import annotations

import numpy as np

BORDER_BAND = 0.10  # fraction of the image side


def border_mask(size: int) -> np.ndarray:
    band = int(round(BORDER_BAND * size))
    m = np.zeros((size, size), bool)
    m[:band], m[-band:], m[:, :band], m[:, -band:] = True, True, True, True
    return m


def occlude(images: np.ndarray, hide: np.ndarray) -> np.ndarray:
    """Set pixels where ``hide`` (N,S,S or S,S) is true to each image's mean intensity."""
    out = images.astype(np.float32)
    means = out.mean(axis=(1, 2), keepdims=True)
    hide = np.broadcast_to(hide, out.shape)
    out = np.where(hide, means, out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
