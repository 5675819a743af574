"""The one loader every command and ``cxrkit.load`` call: a directory -> its Predictor.

Why here and not in :meth:`Predictor.from_run`: the decision "ensemble or single run" needs
both classes, and the base class importing its subclass made a circle of modules. This module
sits above both, so :mod:`~cxrkit.inference.predictor` never imports
:mod:`~cxrkit.inference.ensemble`.
"""

from __future__ import annotations

from pathlib import Path

from ..run import RunDir
from .defaults import DEFAULT_THRESHOLD
from .ensemble import load_ensemble
from .predictor import Predictor


def load_predictor(
    run_dir: str | Path,
    device="cpu",
    batch_size: int = 32,
    backend: str = "torch",
    threshold: float | None = None,
    precision: str = "32",
    tta: str = "none",
) -> Predictor:
    """The :class:`Predictor` of a run directory, or the
    :class:`~cxrkit.inference.ensemble.EnsemblePredictor` of an ensemble directory
    (``cxr ensemble create``); the arguments are :class:`Predictor`'s (``threshold`` None:
    ``DEFAULT_THRESHOLD``)."""
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    if RunDir(run_dir).is_ensemble():
        return load_ensemble(run_dir, device, batch_size, backend, threshold, precision, tta)
    return Predictor.from_run(run_dir, device, batch_size, backend, threshold, precision, tta)
