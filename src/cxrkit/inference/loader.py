"""The one loader every command and ``cxrkit.load`` call: a directory -> its Predictor.

Why here and not in :meth:`Predictor.from_run`: the decision "ensemble or single run" needs
both classes, and the base class importing its subclass made a circle of modules. This module
sits above both, so :mod:`~cxrkit.inference.predictor` never imports
:mod:`~cxrkit.inference.ensemble`.
"""

from __future__ import annotations

from pathlib import Path

from ..run import RunDir
from .defaults import DEFAULT_BACKEND, DEFAULT_PRECISION, DEFAULT_THRESHOLD, NETWORK_BACKEND
from .ensemble import load_ensemble
from .predictor import Predictor


def load_predictor(
    run_dir: str | Path,
    device="cpu",
    batch_size: int = 32,
    backend: str = DEFAULT_BACKEND,
    threshold: float | None = None,
    precision: str = DEFAULT_PRECISION,
    tta: str = "none",
) -> Predictor:
    """The :class:`Predictor` of a run directory, or the
    :class:`~cxrkit.inference.ensemble.EnsemblePredictor` of an ensemble directory
    (``cxr ensemble create``); the arguments are :class:`Predictor`'s (``threshold`` None:
    ``DEFAULT_THRESHOLD``; ``backend``/``precision``: the CLI's, from :mod:`.defaults`)."""
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    if RunDir(run_dir).is_ensemble():
        return load_ensemble(run_dir, device, batch_size, backend, threshold, precision, tta)
    return Predictor.from_run(run_dir, device, batch_size, backend, threshold, precision, tta)


def with_network(predictor: Predictor) -> Predictor:
    """``predictor``, or the same run on the torch backend when it runs an ONNX export: CAMs and
    the shortcut audit need the network, and ``backend="auto"`` (the default) may have picked an
    export. An ensemble is returned as is (its ``model`` refuses, naming a member)."""
    if predictor.engine is not None and getattr(predictor.engine, "model", None) is None:
        return Predictor.from_run(
            predictor.run.run_dir,
            predictor.device,
            predictor.batch_size,
            NETWORK_BACKEND,
            predictor.threshold,
            predictor.precision,
            predictor.tta,
        )
    return predictor
