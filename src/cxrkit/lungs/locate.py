"""Where are the lungs: the one module that answers it, in a film and in model inputs.

**In a film** (numpy only): ``lung_roi_box`` is what the ``roi: lungs`` preprocessing step calls
before its resize: the tight box of a predicted mask, grown by ``margin`` (a fraction of the
box's width/height on each side; 0.05 keeps the costophrenic angles that a tight predicted mask
may clip) and clipped to the image. ``None`` means "no usable lung": the caller falls back to
the whole image.

**In model inputs** (N, S, S), where the audit's occlusion tests hide them and the Grad-CAM
summary measures them (:func:`lung_fields`): with a lung run (``--lung-run RUN``, or the
classifier's own when its card has ``roi: lungs``) each input is segmented as it is, so the
masks are in the model's frame even when the input is already a lung crop; an image whose
mask fails the quality check gets the fixed central box :data:`LUNG_BOX`. Without a lung run:
the data's own masks when every record has one (only without a ROI: they are drawn on the
whole film), else the fixed box. ``region["region"]`` names what was used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.dataset import CxrDataset
from ..data.images import read_image

# Fractions of the image side. The lung box covers both lung fields of a centred PA/AP film.
LUNG_BOX = (0.12, 0.88, 0.10, 0.90)  # top, bottom, left, right

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


def lung_box_mask(size: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    t, b, left, r = (int(round(f * size)) for f in LUNG_BOX)
    m[t:b, left:r] = True
    return m


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


FIXED_BOX = f"central box (fixed LUNG_BOX {list(LUNG_BOX)})"


def lung_run_of(predictor, lung_run: str | Path | None = None) -> str | None:
    """``lung_run`` when given, else the lung run of a ``roi: lungs`` classifier, else None."""
    if lung_run is not None:
        return str(lung_run)
    return predictor.preprocessing.lung_run_dir


def region_masks(images: np.ndarray, lung_run=None, data_masks: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(N, S, S) bool lung masks for ``images`` and ``{"region", "source", "fallback_images"}``."""
    n, size = len(images), images.shape[-1]
    box = lung_box_mask(size)
    if lung_run is not None:
        from .segmenter import lung_masks_for

        predicted = lung_masks_for(list(np.asarray(images)), lung_run)
        bad = sum(m is None for m in predicted)
        masks = np.stack([box if m is None else m for m in predicted]) if n else np.zeros((0, size, size), bool)
        name = f"predicted lung masks ({lung_run})"
        if bad:
            name += f"; {FIXED_BOX} for {bad} of {n} images whose mask failed the quality check"
        return masks, {"region": name, "source": "predicted", "lung_run": str(lung_run), "fallback_images": bad}
    if data_masks is not None:
        return data_masks, {"region": "lung masks from the data", "source": "data", "fallback_images": 0}
    return np.broadcast_to(box, (n, size, size)), {"region": FIXED_BOX, "source": "box", "fallback_images": n}


def lung_fields(images: np.ndarray, predictor, dataset: CxrDataset, lung_run=None) -> tuple[np.ndarray, dict]:
    """Lung masks of a split's model inputs and what they are (:func:`region_masks`): the lung
    run given, else the classifier's own ROI run, else the data's masks (without a ROI), else
    the fixed box."""
    size = images.shape[-1]
    own = None if predictor.preprocessing.roi != "none" else lung_masks(dataset, size)
    return region_masks(images, lung_run_of(predictor, lung_run), own)
