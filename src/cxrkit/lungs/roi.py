"""Lung region of interest from a mask: a box with a margin, and the crop (numpy only).

``lung_roi_box`` is what a ``roi: lungs`` preprocessing step calls before its resize: the
tight box of the mask, grown by ``margin`` (a fraction of the box's width/height on each
side; 0.05 keeps the costophrenic angles that a tight predicted mask may clip) and clipped to
the image. ``None`` means "no usable lung": the caller falls back to the whole image.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1: half-open pixel bounds


def lung_roi_box(mask: np.ndarray, margin: float = 0.05, min_fraction: float = 0.02) -> Box | None:
    """(x0, y0, x1, y1) of ``mask`` plus ``margin``, within the image; None below ``min_fraction``."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"lung_roi_box needs a (H, W) mask, got shape {mask.shape}")
    if mask.mean() < min_fraction:
        return None
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    my, mx = round(margin * (y1 - y0)), round(margin * (x1 - x0))
    h, w = mask.shape
    return int(max(0, x0 - mx)), int(max(0, y0 - my)), int(min(w, x1 + mx)), int(min(h, y1 + my))


def scale_box(box: Box, src_shape: tuple[int, int], dst_shape: tuple[int, int]) -> Box:
    """``box`` found on a (H, W) ``src_shape`` mask, in the pixels of a ``dst_shape`` image."""
    sy, sx = dst_shape[0] / src_shape[0], dst_shape[1] / src_shape[1]
    x0, y0, x1, y1 = box
    return (
        int(np.floor(x0 * sx)),
        int(np.floor(y0 * sy)),
        int(min(dst_shape[1], np.ceil(x1 * sx))),
        int(min(dst_shape[0], np.ceil(y1 * sy))),
    )


def crop_to_roi(
    image: np.ndarray, box: Box | None, mask: np.ndarray | None = None, blank_outside: bool = False, fill=0
) -> np.ndarray:
    """``image`` cut to ``box`` (the whole image when ``box`` is None: the fallback).

    ``blank_outside`` sets pixels outside ``mask`` (same size as ``image``) to ``fill``.
    """
    image = np.asarray(image)
    if blank_outside:
        if mask is None or mask.shape != image.shape[:2]:
            raise ValueError("blank_outside needs a mask of the image's (H, W)")
        image = np.where(mask if image.ndim == 2 else mask[..., None], image, np.asarray(fill, image.dtype))
    if box is None:
        return image
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]
