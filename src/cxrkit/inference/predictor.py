"""One Predictor, loaded from a run directory, used by every command that runs the model.

Preprocessing comes from the run's model card (never re-coded per command), so evaluate,
predict, explain and serve see exactly the pixels training saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..data.images import read_image
from ..training.rundir import LoadedRun, load_run


class Predictor:
    """Class probabilities for images, from a trained run."""

    def __init__(self, run: LoadedRun, device: str | torch.device = "cpu", batch_size: int = 32):
        self.run = run
        self.device = torch.device(device)
        self.model = run.model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.classes = run.classes
        self.preprocessing = run.preprocessing
        self.batch_size = batch_size

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device = "cpu", batch_size: int = 32) -> "Predictor":
        return cls(load_run(run_dir), device, batch_size)

    @property
    def temperature(self) -> float:
        """Calibration temperature fitted on val (1.0 when the run has none)."""
        return float(self.run.card.get("calibration", {}).get("temperature", 1.0))

    @torch.inference_mode()
    def logits_from_uint8(self, images: np.ndarray) -> np.ndarray:
        """Logits for preprocessed uint8 images (N, S, S), in batches."""
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(np.array(images[start:start + self.batch_size]))[:, None]
            x = self.preprocessing.normalise(batch.to(self.device))
            out.append(self.model(x.contiguous(memory_format=torch.channels_last)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def proba_from_uint8(self, images: np.ndarray, temperature: float | None = None) -> np.ndarray:
        logits = self.logits_from_uint8(images)
        return softmax(logits / (self.temperature if temperature is None else temperature))

    def predict_proba(self, images: Iterable[str | Path | np.ndarray]) -> np.ndarray:
        """Probabilities for image files or decoded gray arrays in [0, 1]."""
        arrays = [img if isinstance(img, np.ndarray) else read_image(img) for img in images]
        if not arrays:
            return np.zeros((0, len(self.classes)), np.float32)
        return self.proba_from_uint8(np.stack([self.preprocessing.to_uint8(a) for a in arrays]))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
