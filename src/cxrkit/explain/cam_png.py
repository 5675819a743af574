"""Grad-CAM overlay PNGs for ``cxr predict --cam``, the service and the PACS writer.

All callers share this one path: maps from :class:`~cxrkit.explain.cams.Explainer` under the
predictor's lock (CAM hooks must not see another thread's forward pass), figures from
:func:`~cxrkit.explain.overlay.overlay_figure` over the image at its original size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from ..inference.predictor import Predictor
from .cams import Explainer
from .defaults import DEFAULT_METHOD
from .overlay import overlay_figure, png_bytes


class CamOverlays:
    """Explain preprocessed images and render the overlay PNGs, for one predictor."""

    def __init__(self, predictor: Predictor, method: str | None = None):
        self.explainer = Explainer(predictor, method or DEFAULT_METHOD)
        self.predictor = self.explainer.predictor  # the torch one when predictor ran an ONNX export

    @property
    def caption(self) -> str:
        return f"{self.explainer.method} on layer {self.explainer.layer_name}"

    def explain(self, images: np.ndarray, target: int | None = None):
        """:class:`~cxrkit.explain.Explanation` of uint8 images (N, S, S), one map per image."""
        with self.predictor.lock:
            return self.explainer.explain(images, target)

    def png(self, gray: np.ndarray, explanation, index: int = 0) -> bytes:
        """The overlay of image ``index`` of ``explanation`` on ``gray`` (its decoded original)."""
        e, gray = explanation, self.predictor.preprocessing.view(gray)  # roi: lungs: the lung crop
        return png_bytes(
            overlay_figure(
                gray, e.maps[index], e.classes[index], e.probabilities[index], self.predictor.classes, self.caption
            )
        )

    def write(self, files: list[Path], out_dir: Path, progress: Callable[[int, int], None] | None = None) -> list[Path]:
        """``<stem>_cam.png`` in ``out_dir`` per file (``<stem>_2_cam.png``... when stems repeat)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        used: set[str] = set()
        step = self.explainer.batch_size
        for start in range(0, len(files), step):
            batch = files[start : start + step]
            grays = [self.predictor.decode(f) for f in batch]
            exp = self.explain(np.stack([self.predictor.preprocessing.to_uint8(g) for g in grays]))
            for i, (f, gray) in enumerate(zip(batch, grays)):
                written.append(atomic_write_bytes(out_dir / _unique(f.stem, used), self.png(gray, exp, i)))
            if progress:
                progress(len(written), len(files))
        return written


def _unique(stem: str, used: set[str]) -> str:
    name, k = f"{stem}_cam.png", 1
    while name in used:
        k += 1
        name = f"{stem}_{k}_cam.png"
    used.add(name)
    return name
