"""The one softmax every layer uses (numpy, float64-safe, any temperature)."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (max subtracted first: no overflow)."""
    z = np.asarray(logits) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def other_abnormal(logits: np.ndarray, n_classes: int, temperature: float = 1.0) -> np.ndarray:
    """Softmax mass of the outputs after the first ``n_classes`` (a model's auxiliary classes):
    the probability of "abnormal, but none of the classes"; zeros when there are none."""
    return softmax(logits, temperature)[..., n_classes:].sum(-1)
