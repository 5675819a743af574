"""Run a trained model on a split of a dataset and measure it with confidence intervals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.cache import cached_images
from ..data.dataset import CxrDataset
from ..data.prepare import prepare
from ..inference.predictor import Predictor
from .bootstrap import bootstrap_ci
from .metrics import classification_metrics, confusion

DEFAULT_RESAMPLES = 1000


@dataclass
class SplitPredictions:
    dataset: CxrDataset  # the records that were predicted, in order
    y_true: np.ndarray
    probs: np.ndarray
    classes: list[str]


def predict_split(run_dir: str | Path, data: str | Path | None = None, split: str = "test",
                  workers: int = 2, cache_dir: str | Path | None = None) -> SplitPredictions:
    """Probabilities of the run's model on ``split`` ("train", "val", "test" or "all").

    ``data`` defaults to the dataset the run was trained on, with the run's own split.
    """
    predictor = Predictor.from_run(run_dir)
    run_dir = Path(run_dir)
    data = data or predictor.run.card["data"]["path"]
    prep = prepare(data, predictor.classes, split_file=run_dir / "split.csv" if split != "all" else None,
                   workers=workers)
    ds = prep.dataset if split == "all" else prep.split.subset(prep.dataset, split)
    if len(ds) == 0:
        raise ValueError(f"the {split} split of {data} is empty")
    images = cached_images(ds, predictor.preprocessing, cache_dir, workers=workers)
    return SplitPredictions(ds, ds.labels, predictor.proba_from_uint8(images), predictor.classes)


def summarize(y_true: np.ndarray, probs: np.ndarray, classes: list[str], groups=None,
              n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Every metric with a bootstrap 95% CI (resampling patients when ``groups`` are given)."""
    ci = bootstrap_ci(lambda idx: classification_metrics(y_true[idx], probs[idx], classes),
                      len(y_true), groups=groups, n_resamples=n_resamples, seed=seed)
    cm = confusion(y_true, probs.argmax(1), len(classes))
    return {
        "n_images": int(len(y_true)),
        "bootstrap": {"resamples": n_resamples, "unit": "patient" if groups is not None else "image",
                      "seed": seed, "level": 0.95},
        "metrics": ci,
        "confusion": {"classes": list(classes), "counts": cm.tolist(),
                      "row_normalised": (cm / np.maximum(cm.sum(1, keepdims=True), 1)).round(4).tolist()},
    }
