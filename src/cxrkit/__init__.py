"""cxrkit: train, evaluate and explain chest X-ray classifiers, honestly.

For research, not diagnosis: no output of this package is a medical device.
"""

from ._meta import RESEARCH_NOTICE, __version__
from ._speed import tune_allocator

tune_allocator()  # before torch allocates anything: see cxrkit._speed (CXR_MALLOC=system: off)


__all__ = ["RESEARCH_NOTICE", "__version__", "load"]


def load(
    run_dir,
    backend: str = "torch",
    threshold: float | None = None,
    device: str = "cpu",
    precision: str = "32",
    tta: str = "none",
):
    """The run's :class:`~cxrkit.inference.Predictor`: ``cxrkit.load(run).predict(paths)``.

    Imports torch only when called, so ``import cxrkit`` stays light. ``threshold`` (default
    ``cxrkit.inference.DEFAULT_THRESHOLD``) flags predictions whose top probability is below it.
    ``precision`` "auto" runs bf16 where the device computes it natively (the CLI's default);
    the library's default "32" gives bit-for-bit the probabilities of earlier versions.
    ``backend`` "auto" (the CLI's default) runs the fastest export the run has that passed parity
    (int8 ONNX, then fp32 ONNX, then torch: :func:`cxrkit.inference.backends.choose_backend`).
    ``tta`` "standard" averages over 7 views (:mod:`cxrkit.inference.tta`). An ensemble
    directory (``cxr ensemble create``) gives an :class:`~cxrkit.inference.ensemble.EnsemblePredictor`.
    """
    from .inference.loader import load_predictor

    return load_predictor(run_dir, device, backend=backend, precision=precision, threshold=threshold, tta=tta)
