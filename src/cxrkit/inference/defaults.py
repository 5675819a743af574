"""Inference settings the CLI needs before torch is imported (``cxr --help`` stays fast)."""

from __future__ import annotations

from ..errors import UsageError

BACKENDS = ("torch", "onnx")
# A prediction whose top probability is below this is flagged ``uncertain``: with three
# classes 0.33 is a coin toss, and below 0.6 the model does not clearly favour one class.
DEFAULT_THRESHOLD = 0.6


def check_threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold must be between 0 and 1, got {threshold}")
    return float(threshold)
