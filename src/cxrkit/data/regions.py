"""Image regions the evidence is measured on: the lung field and the film's border band.

The audit hides or keeps them (occlusion tests) and the Grad-CAM summary measures how much
of a map's energy falls in each. Lung masks come from the data where every record has one;
otherwise the documented fixed boxes below stand in (and the report names them).
"""

from __future__ import annotations

import numpy as np

from .dataset import CxrDataset
from .images import read_image

# Fractions of the image side. The lung box covers both lung fields of a centred PA/AP film.
LUNG_BOX = (0.12, 0.88, 0.10, 0.90)  # top, bottom, left, right
BORDER_BAND = 0.10


def lung_box_mask(size: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    t, b, left, r = (int(round(f * size)) for f in LUNG_BOX)
    m[t:b, left:r] = True
    return m


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


def lung_masks(dataset: CxrDataset, size: int) -> np.ndarray | None:
    """Per-image lung masks resized to ``size`` when every record has one, else None."""
    if not dataset.records or not all(r.mask_path for r in dataset.records):
        return None
    from PIL import Image

    masks = [
        np.asarray(
            Image.fromarray((read_image(r.mask_path) > 0.5).astype(np.uint8) * 255).resize((size, size), Image.NEAREST)
        )
        > 127
        for r in dataset.records
    ]
    return np.stack(masks)
