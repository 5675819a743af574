"""The ``roi: lungs`` preprocessing step: crop each film to its predicted lung box, then resize.

Why: the classifier should see the lungs, not the film's border, text, arms or the framing that
differs between a child's and an adult's film. :class:`LungRoiPreprocessing` has the face of
:class:`~cxrkit.data.transforms.Preprocessing` (``to_uint8``, ``normalise``, ``input_size``...)
with the crop in front, and :meth:`LungRoiPreprocessing.to_uint8_many` is the one function
from decoded gray images to model pixels: training's image cache (``cached_images``) and every
:class:`~cxrkit.inference.Predictor` (predict, evaluate, explain, serve, either backend) call it.

The segmenter always runs on onnxruntime here (``lungs.onnx`` of the lung run, exported when
missing) and on one image at a time, in training's cache as in a Predictor, so the two can
never differ by a batch's rounding. On this 2-core CPU (compact U-Net at 192 px, network only)
onnxruntime took 6.5 ms per image at batch 1, 5.4 at batch 8 and 5.7 at batch 32, while torch
took 9.4 ms at batch 32 but 40-430 ms at batch 1-8: batching would save under a millisecond.
Boxes are found on the network-resolution mask and scaled to the image (``scale_box``); a
mask that fails :func:`~cxrkit.lungs.quality.quality` gives the whole image (the fallback),
recorded per input name (:attr:`fallbacks`) and counted in the card's training section.
``roi_blank`` also sets the pixels outside the predicted mask (upsampled to the film) to black
before the resize, so the model sees nothing but lung; a fallback film is not blanked.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..data.transforms import Preprocessing
from ..errors import UsageError
from . import card as cards
from .quality import quality
from .roi import Box, crop_to_roi, lung_roi_box, scale_box

ROI_MODES = ("none", "lungs")
DEFAULT_MARGIN = 0.05  # of the box's width/height, each side: keeps costophrenic angles a tight mask clips
MAX_RECORDED = 10_000  # fallbacks remembered by input name (a server's memory stays bounded)


def weights_sha256(lung_run: str | Path) -> str:
    path = Path(lung_run) / cards.WEIGHTS
    if not path.is_file():
        raise cards.LungRunError(f"{path}: not found; --lung-run must be a finished run of `cxr lungs train`")
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LungRoiPreprocessing:
    """``base`` preprocessing with the lung crop in front (see the module doc)."""

    roi = "lungs"

    def __init__(
        self, base: Preprocessing, lung_run: str | Path, margin: float = DEFAULT_MARGIN, sha256=None, blank=False
    ):
        if not 0 <= margin <= 1:
            raise UsageError(f"roi_margin must be within 0..1 (a fraction of the lung box), got {margin}")
        self.base, self.margin, self.lung_run = base, float(margin), str(Path(lung_run).resolve())
        self.blank = bool(blank)
        actual = weights_sha256(self.lung_run)
        if sha256 and sha256 != actual:
            raise cards.LungRunError(
                f"{self.lung_run}: its weights (sha256 {actual[:12]}) are not the ones this model was "
                f"trained with ({sha256[:12]}); restore that lung run or retrain the classifier"
            )
        self.lung_run_sha256 = actual
        self.fallbacks: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._segmenter = None

    # -- the face of Preprocessing ------------------------------------------------------------
    def __getattr__(self, name):  # input_size, mean, std, contrast, channels
        if name in ("base", "__setstate__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        return self.base.normalise(batch)

    def __call__(self, gray: np.ndarray) -> torch.Tensor:
        return self.normalise(torch.from_numpy(self.to_uint8(gray))[None, None])

    def to_dict(self) -> dict:
        return {
            **self.base.to_dict(),
            "roi": "lungs",
            "roi_margin": self.margin,
            "roi_blank": self.blank,
            "lung_run": self.lung_run,
            "lung_run_sha256": self.lung_run_sha256,
        }

    # -- the crop -----------------------------------------------------------------------------
    @property
    def segmenter(self):
        with self._lock:
            if self._segmenter is None:
                from .segmenter import LungSegmenter

                self._segmenter = LungSegmenter.from_run(self.lung_run, backend="onnx")
            return self._segmenter

    def boxes(self, grays: list[np.ndarray]) -> list[tuple[Box | None, str]]:
        """(box in image pixels or None for the whole image, quality reason) per gray image."""
        return [(box, reason) for box, reason, _ in self._found(grays)]

    def _found(self, grays: list[np.ndarray]):
        """(box or None, quality reason, network-resolution mask) per gray image."""
        seg = self.segmenter
        out = []
        for gray in grays:  # one at a time: see the module doc
            mask = seg.net_masks([gray])[0]
            ok, reason = quality(mask, seg.fraction_range)
            box = lung_roi_box(mask, self.margin) if ok else None
            out.append((scale_box(box, mask.shape, gray.shape[:2]) if box else None, reason, mask))
        return out

    def _view(self, gray: np.ndarray, box: Box | None, mask: np.ndarray) -> np.ndarray:
        """The crop (blanked outside the lungs with ``roi_blank``; a fallback stays whole)."""
        if not (self.blank and box is not None):
            return crop_to_roi(gray, box)
        return crop_to_roi(gray, box, film_mask(mask, gray.shape[:2]), blank_outside=True)

    def to_uint8_many(self, grays: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """(N, S, S) uint8 model pixels and each image's ROI outcome ("ok" or why it fell back)."""
        found = self._found(grays)
        pixels = [self.base.to_uint8(self._view(g, box, m)) for g, (box, _, m) in zip(grays, found)]
        size = self.base.input_size
        return (np.stack(pixels) if pixels else np.zeros((0, size, size), np.uint8)), [r for _, r, _ in found]

    def to_uint8(self, gray: np.ndarray, name: str | None = None) -> np.ndarray:
        """One image; a fallback is recorded under ``name`` (see :meth:`fallback`)."""
        pixels, (reason,) = self.to_uint8_many([gray])
        if name is not None:
            with self._lock:
                self.fallbacks.pop(name, None)
                if reason != "ok":
                    self.fallbacks[name] = reason
                    while len(self.fallbacks) > MAX_RECORDED:
                        self.fallbacks.popitem(last=False)
        return pixels[0]

    def view(self, gray: np.ndarray) -> np.ndarray:
        """The part of ``gray`` the model sees (its lung crop, or the whole film on a fallback)."""
        ((box, _, mask),) = self._found([gray])
        return self._view(gray, box, mask)

    def fallback(self, name: str) -> str | None:
        """Why input ``name`` got the whole image instead of its lungs (None: it got its lungs)."""
        with self._lock:
            return self.fallbacks.get(name)


def model_view(preprocessing, gray: np.ndarray) -> np.ndarray:
    """What a CAM overlay is drawn on: the film as the model saw it (its maps cover the model
    input), i.e. the lung crop with ``roi: lungs`` and the whole film otherwise."""
    return preprocessing.view(gray) if isinstance(preprocessing, LungRoiPreprocessing) else gray


def film_mask(net_mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A network-resolution lung mask at the film's (H, W): bilinear upsampling, threshold 0.5."""
    import cv2

    up = cv2.resize(net_mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return up >= 0.5


def with_lung_roi(
    base: Preprocessing, roi: str = "none", lung_run=None, margin: float = DEFAULT_MARGIN, blank: bool = False
):
    """``base`` itself for ``roi="none"``, else the lung crop in front of it (``cxr train --roi``)."""
    if roi not in ROI_MODES:
        raise UsageError(f"--roi must be one of {', '.join(ROI_MODES)}, got {roi!r}")
    if roi == "none":
        if blank:
            raise UsageError("--roi-blank blanks outside the predicted lungs: it needs --roi lungs")
        return base
    if not lung_run:
        raise UsageError("--roi lungs needs --lung-run RUN (a run of `cxr lungs train`, e.g. runs/lungs)")
    return LungRoiPreprocessing(base, lung_run, margin, blank=blank)


def from_card(base: Preprocessing, spec: dict, source: str = "model card"):
    """The preprocessing a card's ``preprocessing`` section describes (old cards: no ROI)."""
    roi = spec.get("roi") or "none"
    if roi == "none":
        return base
    if roi != "lungs" or not spec.get("lung_run"):
        raise UsageError(f"{source}: preprocessing.roi {roi!r} needs roi 'lungs' and a lung_run; the card is damaged")
    return LungRoiPreprocessing(
        base,
        spec["lung_run"],
        spec.get("roi_margin", DEFAULT_MARGIN),
        spec.get("lung_run_sha256"),
        blank=bool(spec.get("roi_blank", False)),
    )
