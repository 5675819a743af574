"""Classification metrics from labels and probabilities, as one flat dict of numbers.

Flat keys (``sensitivity/covid``, ``auc/normal``, ``accuracy``...) make bootstrapping,
JSON output and tables trivial: every key gets a confidence interval the same way.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def classification_metrics(y_true, probs, classes) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class sensitivity, specificity, PPV, NPV, F1, one-vs-rest AUC."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    y_pred = probs.argmax(1)
    cm = confusion(y_true, y_pred, k)
    n = cm.sum()
    out: dict[str, float] = {"accuracy": _ratio(np.trace(cm), n)}
    f1s = []
    for i, c in enumerate(classes):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = n - tp - fn - fp
        out[f"sensitivity/{c}"] = _ratio(tp, tp + fn)
        out[f"specificity/{c}"] = _ratio(tn, tn + fp)
        out[f"ppv/{c}"] = _ratio(tp, tp + fp)
        out[f"npv/{c}"] = _ratio(tn, tn + fn)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        out[f"f1/{c}"] = f1
        f1s.append(f1)
        positives = y_true == i
        out[f"auc/{c}"] = (
            float(roc_auc_score(positives, probs[:, i])) if 0 < positives.sum() < len(y_true) else float("nan")
        )
    present = [f for f, row in zip(f1s, cm) if row.sum() > 0]
    out["macro_f1"] = float(np.mean(present)) if present else float("nan")
    return out
