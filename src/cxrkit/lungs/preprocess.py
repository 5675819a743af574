"""The ``roi: lungs`` preprocessing step: crop each film to its predicted lung box, then resize.

Why: the classifier should see the lungs, not the film's border, text, arms or the framing that
differs between a child's and an adult's film. :class:`LungRoiPreprocessing` is the chain of
:class:`~cxrkit.data.pipeline.Pipeline` with the crop in front of
:class:`~cxrkit.data.transforms.Preprocessing`'s steps, and :func:`build_pipeline` is the one
builder of a chain from a card: training's image cache (``cached_images``) and every
:class:`~cxrkit.inference.Predictor` (predict, evaluate, explain, serve, either backend) use it.

The segmenter always runs on onnxruntime here (``lungs.onnx`` of the lung run, exported when
missing) and on one image at a time, in training's cache as in a Predictor, so the two can
never differ by a batch's rounding. On this 2-core CPU (compact U-Net at 192 px, network only)
onnxruntime took 6.5 ms per image at batch 1, 5.4 at batch 8 and 5.7 at batch 32, while torch
took 9.4 ms at batch 32 but 40-430 ms at batch 1-8: batching would save under a millisecond.
Boxes are found on the network-resolution mask and scaled to the image (``scale_box``); a
mask that fails :func:`~cxrkit.lungs.quality.quality` gives the whole image (the fallback),
returned as the image's outcome by ``to_uint8_many`` (the Predictor records it per input name)
and counted in the card's training section.
``roi_blank`` also sets the pixels outside the predicted mask (upsampled to the film) to black
before the resize, so the model sees nothing but lung; a fallback film is not blanked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from ..data.transforms import Preprocessing
from ..errors import UsageError
from ..run import lung_card as cards
from .locate import Box, crop_to_roi, lung_roi_box, scale_box
from .quality import quality

ROI_MODES = ("none", "lungs")
CARRIED = "lungs"  # where a roi: lungs run keeps its own copy of the lung model
DEFAULT_MARGIN = 0.05  # of the box's width/height, each side: keeps costophrenic angles a tight mask clips


def weights_sha256(lung_run: str | Path) -> str:
    path = Path(lung_run) / cards.WEIGHTS
    if not path.is_file():
        raise cards.LungRunError(f"{path}: not found; --lung-run must be a finished run of `cxr lungs train`")
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LungRoiPreprocessing:
    """``base`` preprocessing with the lung crop in front (see the module doc).

    ``lung_run`` is kept as the card stores it (relative paths are relative to the classifier's
    run directory ``root``, so a run that carries its lung model can be moved whole);
    :attr:`lung_run_dir` is where it was found.
    """

    roi = "lungs"
    batched = True  # the segmenter stays in this process: caches are built batch by batch

    def __init__(
        self,
        base: Preprocessing,
        lung_run: str | Path,
        margin: float = DEFAULT_MARGIN,
        sha256=None,
        blank=False,
        root: str | Path | None = None,
    ):
        if not 0 <= margin <= 1:
            raise UsageError(f"roi_margin must be within 0..1 (a fraction of the lung box), got {margin}")
        self.base, self.margin, self.lung_run = base, float(margin), str(lung_run)
        self.lung_run_dir = str((Path(root or ".") / lung_run).resolve())
        self.blank = bool(blank)
        actual = weights_sha256(self.lung_run_dir)
        if sha256 and sha256 != actual:
            raise cards.LungRunError(
                f"{self.lung_run_dir}: its weights (sha256 {actual[:12]}) are not the ones this model was "
                f"trained with ({sha256[:12]}); restore that lung run or retrain the classifier"
            )
        self.lung_run_sha256 = actual
        self._lock = threading.Lock()
        self._segmenter = None

    # -- the chain after the crop: the base's ---------------------------------------------------
    input_size = property(lambda self: self.base.input_size)
    mean = property(lambda self: self.base.mean)
    std = property(lambda self: self.base.std)
    contrast = property(lambda self: self.base.contrast)
    channels = property(lambda self: self.base.channels)

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        return self.base.normalise(batch)

    def __call__(self, gray: np.ndarray) -> torch.Tensor:
        return self.normalise(torch.from_numpy(self.to_uint8(gray))[None, None])

    def roi_settings(self) -> dict:
        return {
            "roi": "lungs",
            "roi_margin": self.margin,
            "roi_blank": self.blank,
            "lung_run": self.lung_run,
            "lung_run_sha256": self.lung_run_sha256,
        }

    def to_dict(self) -> dict:
        return {**self.base.to_dict(), **self.roi_settings()}

    # -- the crop -----------------------------------------------------------------------------
    @property
    def segmenter(self):
        with self._lock:
            if self._segmenter is None:
                from .segmenter import LungSegmenter

                self._segmenter = LungSegmenter.from_run(self.lung_run_dir, backend="onnx")
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

    def to_uint8(self, gray: np.ndarray) -> np.ndarray:
        return self.to_uint8_many([gray])[0][0]

    def view(self, gray: np.ndarray) -> np.ndarray:
        """The part of ``gray`` the model sees (its lung crop, or the whole film on a fallback)."""
        ((box, _, mask),) = self._found([gray])
        return self._view(gray, box, mask)


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
    if roi == "none" and blank:
        raise UsageError("--roi-blank blanks outside the predicted lungs: it needs --roi lungs")
    if roi == "lungs" and not lung_run:
        raise UsageError("--roi lungs needs --lung-run RUN (a run of `cxr lungs train`, e.g. runs/lungs)")
    lung_run = lung_run and str(Path(lung_run).resolve())
    spec = {"roi": roi, "lung_run": lung_run, "roi_margin": margin, "roi_blank": blank}
    return build_pipeline({**base.to_dict(), **spec}, source="--roi")


def build_pipeline(spec: dict, run_dir: str | Path | None = None, source: str = "model card"):
    """The one builder: a card's ``preprocessing`` section (plain data) -> its chain
    (:class:`~cxrkit.data.pipeline.Pipeline`). Training, the Predictor (predict, evaluate,
    explain, serve, pacs), the image cache and the ONNX export all get their chain here.

    A relative ``lung_run`` is relative to ``run_dir`` (the classifier's run directory); old
    cards without ROI fields give the plain chain.
    """
    base = Preprocessing.from_dict(spec)
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
        root=run_dir,
    )


def carry_lung_run(pipeline, run_dir: str | Path):
    """``pipeline`` with its lung model copied into ``run_dir/lungs`` and the card's ``lung_run``
    pointing there (relative): the run directory can then be moved or copied whole, and the lung
    run it was trained with may be deleted. A chain without a ROI step is returned as it is.

    Copied: the lung card, its weights and ``lungs.onnx`` (what the ROI step runs), written to a
    temporary folder and renamed into place; an existing copy of the same weights is kept.
    """
    if pipeline.roi == "none":
        return pipeline
    dest = Path(run_dir) / CARRIED
    if not (dest / cards.WEIGHTS).is_file() or weights_sha256(dest) != pipeline.lung_run_sha256:
        from .onnx import ONNX

        pipeline.segmenter  # makes sure lungs.onnx is there and current
        tmp = Path(tempfile.mkdtemp(prefix=".lungs.", dir=run_dir))
        for name in (cards.CARD, cards.WEIGHTS, ONNX):
            shutil.copy2(Path(pipeline.lung_run_dir) / name, tmp / name)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    return build_pipeline({**pipeline.to_dict(), "lung_run": CARRIED}, run_dir)


def make_self_contained(run_dir: str | Path) -> bool:
    """A ``roi: lungs`` run made before runs carried their lung model (its card names the lung
    run by an absolute path): copy the model in and point the card at ``lungs``, as training now
    does. ``cxr export`` calls it, so an exported run can be moved whole. True when it changed."""
    from ..run import read_card, update_card

    card = read_card(run_dir)
    pipeline = build_pipeline(card.preprocessing.to_dict(), run_dir, str(Path(run_dir)))
    if pipeline.roi == "none" or card.preprocessing.lung_run == CARRIED:
        return False
    carry_lung_run(pipeline, run_dir)
    update_card(run_dir, "preprocessing", dataclasses.replace(card.preprocessing, lung_run=CARRIED))
    return True
