"""Every metric with a bootstrap CI, the confusion matrix and ROC curves of one set of predictions.

Shared by the whole-split evaluation and the subgroup tables (which used to import each other).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from .bootstrap import bootstrap_ci
from .metrics import classification_metrics, confusion

DEFAULT_RESAMPLES = 1000


def summarize(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    groups=None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Every metric with a bootstrap 95% CI (resampling patients when ``groups`` are given)."""
    ci = bootstrap_ci(
        lambda idx: classification_metrics(y_true[idx], probs[idx], classes),
        len(y_true),
        groups=groups,
        n_resamples=n_resamples,
        seed=seed,
    )
    cm = confusion(y_true, probs.argmax(1), len(classes))
    return {
        "n_images": int(len(y_true)),
        "bootstrap": {
            "resamples": n_resamples,
            "unit": "patient" if groups is not None else "image",
            "seed": seed,
            "level": 0.95,
        },
        "metrics": ci,
        "confusion": {
            "classes": list(classes),
            "counts": cm.tolist(),
            "row_normalised": (cm / np.maximum(cm.sum(1, keepdims=True), 1)).round(4).tolist(),
        },
    }


def roc_curves(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    out = {}
    for i, c in enumerate(classes):
        positives = y_true == i
        if 0 < positives.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positives, probs[:, i])
            out[c] = {"fpr": fpr.round(5).tolist(), "tpr": tpr.round(5).tolist(), "auc": float(np.trapezoid(tpr, fpr))}
    return out
