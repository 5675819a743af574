"""Which pixels are "the lungs" when the audit hides them and the CAM summary measures them.

The audit's occlusion tests and the Grad-CAM summary's lung-vs-border shares work on the model
inputs (N, S, S). With a lung run (``--lung-run RUN``, or the classifier's own when its card has
``roi: lungs``), each input is segmented as it is, so the masks are in the model's frame even
when the input is already a lung crop; an image whose mask fails the quality check gets the
fixed central box. Without a lung run: the data's own masks when every record has one (only
without a ROI: they are drawn on the whole film), else the fixed box. ``region["region"]`` names
what was used, and the report and summary print it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.regions import LUNG_BOX, lung_box_mask

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
