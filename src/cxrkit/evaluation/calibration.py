"""Calibration: does a predicted 90% mean right 9 times in 10?

ECE (equal-width confidence bins), Brier score, NLL, reliability-diagram data, and
temperature scaling (Guo et al. 2017): one scalar T fitted on the validation split by
minimising NLL of softmax(logits / T). It changes no prediction, only their confidence.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UsageError

N_BINS = 10


def nll(y_true: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0))))


def brier(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean squared distance to the one-hot truth (0 is perfect)."""
    onehot = np.eye(probs.shape[1])[y_true]
    return float(np.mean(((probs - onehot) ** 2).sum(1)))


def reliability(y_true: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Per confidence bin: mean confidence, accuracy and count (NaN for empty bins)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, conf, n_bins) / count
        acc = np.bincount(bins, correct.astype(float), n_bins) / count
    return {
        "bin_edges": edges.tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": acc.tolist(),
        "count": count.astype(int).tolist(),
    }


def ece(y_true: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: count-weighted mean |accuracy - confidence| over bins."""
    r = reliability(y_true, probs, n_bins)
    count = np.asarray(r["count"], float)
    gap = np.abs(np.nan_to_num(np.asarray(r["accuracy"]) - np.asarray(r["confidence"])))
    return float((gap * count).sum() / max(count.sum(), 1))


def calibration_summary(y_true: np.ndarray, probs: np.ndarray) -> dict:
    return {
        "ece": ece(y_true, probs),
        "brier": brier(y_true, probs),
        "nll": nll(y_true, probs),
        "reliability": reliability(y_true, probs),
    }


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature minimising NLL on (``logits``, ``y_true``), searched in log space (T > 0)."""
    if len(y_true) == 0:
        raise UsageError("cannot fit a temperature on an empty split")
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(y_true, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))
