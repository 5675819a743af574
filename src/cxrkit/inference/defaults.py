"""Inference settings the CLI needs before torch is imported (``cxr --help`` stays fast)."""

from __future__ import annotations

from ..errors import UsageError

# "auto" (the default of `cxr predict` and `cxr serve`): the fastest of the run's exports that
# passed parity (cxrkit.inference.backends.choose_backend); torch when there is none.
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
# A prediction whose top probability is below this is flagged ``uncertain``: with three
# classes 0.33 is a coin toss, and below 0.6 the model does not clearly favour one class.
DEFAULT_THRESHOLD = 0.6


def check_threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold must be between 0 and 1, got {threshold}")
    return float(threshold)
