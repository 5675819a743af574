"""Faithfulness: does removing what a map calls important change the prediction?

Methods disagree, and a map that looks plausible need not be what the model used. ROAD
(Rong et al. 2022, grad-cam's ``pytorch_grad_cam.metrics.road``) removes pixels in the
order the map gives and fills them by noisy linear imputation from their neighbours, so the
removal's shape does not leak the answer. For each percentile it measures the change in the
calibrated probability of the predicted class:

* ``drop_most_relevant_first``: mean probability lost when the most relevant pixels go
  (a faithful map: large);
* ``drop_least_relevant_first``: the same when the least relevant go first (faithful: small);
* ``road``: half their difference, grad-cam's ROADCombined; higher is more faithful.

The same numbers for smooth random maps are the floor a method has to beat.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage

from ..errors import UsageError
from ..inference.predictor import Predictor
from .cams import METHODS, Explainer
from .defaults import SLOW_METHODS

__all__ = ["DEFAULT_COMPARED", "ROAD_PERCENTILES", "compare_methods", "road_scores"]

ROAD_PERCENTILES = (20, 40, 60, 80)
DEFAULT_COMPARED = tuple(m for m in METHODS if m not in SLOW_METHODS)
RANDOM_MAP_CELL = 8  # random maps vary over cells of this many pixels, like an upsampled CAM


class CalibratedProbability:
    """grad-cam target: the calibrated probability of one class."""

    def __init__(self, category: int, temperature: float):
        self.category, self.temperature = category, temperature

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.temperature, dim=-1)[..., self.category]


def road_scores(
    explainer: Explainer,
    images: np.ndarray,
    maps: np.ndarray,
    classes: np.ndarray,
    percentiles: Sequence[int] = ROAD_PERCENTILES,
    seed: int = 0,
) -> dict:
    """ROAD for ``maps`` (N, S, S) explaining ``classes`` (N,) of uint8 ``images``.

    The imputation noise is seeded, so every method is scored under the same noise.
    """
    predictor = explainer.predictor
    morf_metric = ROADMostRelevantFirstAverage(list(percentiles))
    lerf_metric = ROADLeastRelevantFirstAverage(list(percentiles))
    morf, lerf = [], []
    with torch.random.fork_rng(devices=[]), predictor.lock, torch.no_grad(), warnings.catch_warnings():
        torch.manual_seed(seed)
        # grad-cam's imputer hands torch tensors to numpy functions; numpy 2 warns on each call
        warnings.filterwarnings("ignore", "__array_wrap__", DeprecationWarning)
        for start in range(0, len(images), explainer.batch_size):
            stop = start + explainer.batch_size
            x = explainer.model_input(images[start:stop])
            targets = [CalibratedProbability(int(c), predictor.temperature) for c in classes[start:stop]]
            morf.append(morf_metric(x, maps[start:stop], targets, predictor.model))
            lerf.append(lerf_metric(x, maps[start:stop], targets, predictor.model))
    drop_morf, drop_lerf = -np.concatenate(morf), -np.concatenate(lerf)
    return {
        "drop_most_relevant_first": float(drop_morf.mean()),
        "drop_least_relevant_first": float(drop_lerf.mean()),
        "road": float(((drop_morf - drop_lerf) / 2).mean()),
    }


def random_maps(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random maps in [0, 1]: uniform noise on a coarse grid, upsampled bilinearly."""
    cells = max(2, size // RANDOM_MAP_CELL)
    coarse = torch.from_numpy(np.random.default_rng(seed).random((n, 1, cells, cells), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return smooth[:, 0].numpy()


def compare_methods(
    predictor: Predictor,
    images: np.ndarray,
    methods: Sequence[str] = DEFAULT_COMPARED,
    target_layer: str | None = None,
    percentiles: Sequence[int] = ROAD_PERCENTILES,
    max_images: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """ROAD per method on up to ``max_images`` images drawn (seeded) from ``images``, for
    the predicted class, plus the random-map floor. JSON-ready."""
    if not methods:
        raise UsageError("no CAM method to score")
    explainers = [Explainer(predictor, m, target_layer, batch_size=batch_size) for m in methods]
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), min(max_images, len(images)), replace=False))
    sample = np.asarray(images[chosen])
    results = {}
    for done, explainer in enumerate(explainers):
        exp = explainer.explain(sample)
        results[explainer.method] = road_scores(explainer, sample, exp.maps[:, 0], exp.classes[:, 0], percentiles, seed)
        if progress:
            progress(done + 1, len(explainers) + 1)
    floor = road_scores(
        explainers[0], sample, random_maps(len(sample), sample.shape[-1], seed), exp.predicted, percentiles, seed
    )
    if progress:
        progress(len(explainers) + 1, len(explainers) + 1)
    return {
        "metric": "ROAD (remove and debias), grad-cam's pytorch_grad_cam.metrics.road",
        "score": "calibrated probability of the predicted class",
        "n_images": int(len(sample)),
        "percentiles": list(percentiles),
        "seed": seed,
        "target_layer": explainers[0].layer_name,
        "methods": results,
        "random_maps": floor,
    }


def map_agreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How alike two sets of (N, S, S) maps are, per pair: the Pearson correlation, and the
    distance in pixels between their peaks (bf16 vs fp32 CAMs: ``bench/cam_precision.py``)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    za = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-8)
    zb = (b - b.mean(1, keepdims=True)) / (b.std(1, keepdims=True) + 1e-8)
    side = int(round(np.sqrt(a.shape[1])))
    pa, pb = np.unravel_index(a.argmax(1), (side, side)), np.unravel_index(b.argmax(1), (side, side))
    return (za * zb).mean(1), np.hypot(pa[0] - pb[0], pa[1] - pb[1])
