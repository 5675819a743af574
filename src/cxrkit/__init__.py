"""cxrkit: train, evaluate and explain chest X-ray classifiers, honestly.

For research, not diagnosis: no output of this package is a medical device.
"""

from ._meta import RESEARCH_NOTICE, __version__
from ._speed import tune_allocator
from .inference.defaults import DEFAULT_BACKEND, DEFAULT_PRECISION

tune_allocator()  # before torch allocates anything: see cxrkit._speed (CXR_MALLOC=system: off)


__all__ = ["RESEARCH_NOTICE", "__version__", "load"]


def load(
    run_dir,
    backend: str = DEFAULT_BACKEND,
    threshold: float | None = None,
    device: str = "cpu",
    precision: str = DEFAULT_PRECISION,
    tta: str = "none",
):
    """The run's :class:`~cxrkit.inference.Predictor`: ``cxrkit.load(run).predict(paths)``.

    Imports torch only when called, so ``import cxrkit`` stays light. ``threshold`` (default
    ``cxrkit.inference.DEFAULT_THRESHOLD``) flags predictions whose top probability is below it.
    ``backend`` and ``precision`` default to the CLI's (:mod:`cxrkit.inference.defaults`, "auto"):
    ``backend`` "auto" runs the fastest export the run has that passed parity (int8 ONNX, then
    fp32 ONNX, then torch: :func:`cxrkit.inference.backends.choose_backend`); ``precision``
    "auto" runs bf16 where the device computes it natively. ``backend="torch", precision="32"``
    (earlier versions' defaults) gives the same fp32 PyTorch probabilities on every host.
    ``tta`` "standard" averages over 7 views (:mod:`cxrkit.inference.tta`). An ensemble
    directory (``cxr ensemble create``) gives an :class:`~cxrkit.inference.ensemble.EnsemblePredictor`.
    """
    from .inference.loader import load_predictor

    return load_predictor(run_dir, device, backend=backend, precision=precision, threshold=threshold, tta=tta)
