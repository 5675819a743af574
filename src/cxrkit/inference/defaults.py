"""Inference defaults shared by the Python API and the CLI, importable before torch (``cxr --help`` stays fast).

``cxrkit.load``, :func:`~cxrkit.inference.loader.load_predictor`, :class:`~cxrkit.inference.Predictor`
and the ensemble loader take their ``backend``/``precision`` defaults from here, and so do the
options of ``cxr predict``, ``serve``, ``evaluate``, ``pacs`` and ``explain``: one place, so a
script and the command line cannot drift apart (tests/inference/test_defaults.py).

Why "auto" for both, and what it costs: a script now gets what the CLI gets, the fastest export
that passed parity and bf16 where the hardware computes it natively, so its probabilities can
differ (within the parity tolerance, or bf16 rounding) between hosts and between a run with and
without an export. Code that needs bit-for-bit fp32 torch arithmetic (parity checks, fixture
comparisons) names ``backend="torch", precision="32"``. Code that needs the network itself
(CAMs, the shortcut audit) gets it: :class:`~cxrkit.explain.Explainer` swaps an ONNX predictor
for the same run on torch, and ``evaluate``/``explain`` load torch directly.
"""

from __future__ import annotations

from ..errors import UsageError

# what ``backend=`` / ``--backend`` accept
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "auto"
"""The fastest of the run's exports that passed parity, else torch (``choose_backend``)."""
DEFAULT_PRECISION = "auto"
"""bf16 where the device computes it natively, else fp32 (``cxrkit._precision.resolve_precision``)."""
NETWORK_BACKEND = "torch"
"""What evaluate, audit and explain load instead of :data:`DEFAULT_BACKEND`: CAMs and the audit's
probes need the network, and the metrics and temperature evaluate writes into a run describe the
network the exports are parity-checked against, not whichever export happens to exist."""
# A prediction whose top probability is below this is flagged ``uncertain``: with three
# classes 0.33 is a coin toss, and below 0.6 the model does not clearly favour one class.
DEFAULT_THRESHOLD = 0.6


def check_threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold must be between 0 and 1, got {threshold}")
    return float(threshold)
