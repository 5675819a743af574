"""Predict lung masks with a trained run: ``LungSegmenter.from_run(dir).predict_masks(images)``.

Every image goes the same way in training and prediction (:func:`to_input`): resized to the
card's square ``size`` (256 px: lungs fill most of any film, so squashing costs nothing the
mask needs), then standardised per image (mean 0, std 1) so exposure differences between
sources matter less. The logits are upsampled bilinearly to each image's own size and cut at
the card's threshold (0.5 in probability).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ..errors import UsageError
from ..run import lung_card as cards
from .model import build
from .quality import DEFAULT_RANGE, quality


def to_input(batch: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, H, W) float in [0, 1] -> (N, 1, size, size) standardised model input."""
    if batch.shape[-2:] != (size, size):
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    std = batch.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (batch - mean) / std


def as_uint8(image: np.ndarray) -> np.ndarray:
    """A gray image (uint8, uint16 or float in [0, 1]) or an RGB one as (H, W) uint8."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image.mean(axis=2) if image.dtype != np.uint8 else image.mean(axis=2).round().astype(np.uint8)
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


class LungSegmenter:
    """A trained lung model and its card; ``predict_masks`` takes any list of gray images."""

    def __init__(self, model: torch.nn.Module, card: dict, device: str = "cpu"):
        self.card, self.device = card, torch.device(device)
        self.size = int(card["input_size"])
        self.threshold = float(card.get("threshold", 0.5))
        self.fraction_range = tuple(card.get("fraction_range", DEFAULT_RANGE))
        self.model = model.to(self.device).eval()
        if isinstance(self.model, torch.nn.Module):
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", backend: str = "torch") -> LungSegmenter:
        """``backend``: ``torch`` or ``onnx`` (onnxruntime on the CPU; exports ``lungs.onnx`` when needed)."""
        card = cards.read_card(run_dir)
        model = build(card["arch"], pretrained=False)
        model.load_state_dict(cards.load_weights(run_dir))
        if backend == "onnx":
            from .onnx import onnx_net

            return cls(onnx_net(run_dir, model, int(card["input_size"])), card, "cpu")
        if backend != "torch":
            raise UsageError(f"lung backend {backend!r}: choose torch or onnx")
        return cls(model, card, device)

    @torch.inference_mode()
    def logits(self, images, batch_size: int = 32) -> list[torch.Tensor]:
        """Lung logit maps, each at its image's own (H, W).

        Inputs are resized as uint8 by PIL's bilinear filter (antialiased when shrinking, like
        the torch ``antialias=True`` resize of training, to within rounding); the logits of
        same-sized images are upsampled in one call.
        """
        out = []
        for start in range(0, len(images), batch_size):
            chunk = [as_uint8(im) for im in images[start : start + batch_size]]
            logits = self._net_logits(chunk)
            full: list = [None] * len(chunk)
            by_shape: dict = {}
            for i, im in enumerate(chunk):
                by_shape.setdefault(im.shape, []).append(i)
            for shape, idx in by_shape.items():
                up = F.interpolate(logits[idx], size=shape, mode="bilinear", align_corners=False)[:, 0]
                for j, i in enumerate(idx):
                    full[i] = up[j].cpu()
            out += full
        return out

    def _net_logits(self, chunk: list[np.ndarray]) -> torch.Tensor:
        """(N, 1, size, size) logits of uint8 images, at the network's own resolution."""
        side = (self.size, self.size)
        small = np.stack([np.asarray(Image.fromarray(im).resize(side, Image.BILINEAR)) for im in chunk])
        x = torch.from_numpy(small).to(self.device, torch.float32).div_(255)[:, None]
        return self.model(to_input(x, self.size).contiguous(memory_format=torch.channels_last)).float()

    def _onnx_logits(self, chunk: list[np.ndarray]) -> np.ndarray:
        """:meth:`_net_logits` for the onnxruntime network in numpy only: the torch ops around a
        session run cost 50-70 ms per image on this loaded 2-core CPU (their thread pool competes
        with onnxruntime's), the session itself 5 ms (``bench/lungs_roi_speed.py``)."""
        side = (self.size, self.size)
        x = np.stack([np.asarray(Image.fromarray(im).resize(side, Image.BILINEAR)) for im in chunk])
        x = x[:, None].astype(np.float32) / 255
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        std = np.maximum(x.std(axis=(1, 2, 3), keepdims=True, ddof=1), 1e-3)
        return self.model.sess.run(None, {"x": ((x - mean) / std).astype(np.float32)})[0]

    @torch.inference_mode()
    def net_masks(self, images, batch_size: int = 32) -> np.ndarray:
        """(N, size, size) bool masks at the network's resolution, for boxes and quality: skips
        the upsampling to each image's size, which cost as much as the network on 256x324 films."""
        cut = math.log(self.threshold / (1 - self.threshold))
        net = self._onnx_logits if hasattr(self.model, "sess") else lambda c: self._net_logits(c).cpu().numpy()
        out = [
            net([as_uint8(im) for im in images[s : s + batch_size]])[:, 0] >= cut
            for s in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.size, self.size), bool)

    def probabilities(self, images, batch_size: int = 32) -> list[np.ndarray]:
        """Lung probability maps, each at its image's own (H, W)."""
        return [torch.sigmoid(lg).numpy() for lg in self.logits(images, batch_size)]

    def predict_masks(self, images, batch_size: int = 32) -> np.ndarray | list[np.ndarray]:
        """(N, H, W) bool masks when all images share one size, else a list of (H, W) masks."""
        cut = math.log(self.threshold / (1 - self.threshold))  # probability >= threshold
        masks = [(lg >= cut).numpy() for lg in self.logits(images, batch_size)]
        return np.stack(masks) if masks and len({m.shape for m in masks}) == 1 else masks

    def quality(self, mask: np.ndarray) -> tuple[bool, str]:
        return quality(mask, self.fraction_range)


def lung_masks_for(images, run_dir: str | Path | None) -> list[np.ndarray | None]:
    """Predicted masks for ``images``, ``None`` for each that fails the quality check (or all
    when there is no lung run): callers then use their fallback (the whole image, a fixed box)."""
    if run_dir is None:
        return [None] * len(images)
    path = Path(run_dir).resolve()
    seg = _cached(path, (path / cards.WEIGHTS).stat().st_mtime_ns)
    masks = seg.predict_masks(images)
    return [m if seg.quality(m)[0] else None for m in masks]


@functools.lru_cache(maxsize=2)
def _cached(run_dir: Path, weights_mtime: int) -> LungSegmenter:
    """One loaded segmenter per run (and weights version) for repeated ``lung_masks_for`` calls."""
    return LungSegmenter.from_run(run_dir)
