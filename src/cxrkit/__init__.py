"""cxrkit: train, evaluate and explain chest X-ray classifiers, honestly.

For research, not diagnosis: no output of this package is a medical device.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ._meta import RESEARCH_NOTICE, __version__
from ._speed import tune_allocator
from .inference.defaults import DEFAULT_BACKEND, DEFAULT_PRECISION

if TYPE_CHECKING:
    from .inference.predictor import Predictor

tune_allocator()  # before torch allocates anything: see cxrkit._speed (CXR_MALLOC=system: off)


__all__ = ["RESEARCH_NOTICE", "__version__", "adapt", "load", "site_report"]


def load(
    run_dir: str | Path,
    backend: str = DEFAULT_BACKEND,
    threshold: float | None = None,
    device: str = "cpu",
    precision: str = DEFAULT_PRECISION,
    tta: str = "none",
) -> Predictor:
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

    Args:
        run_dir: a run directory of ``cxr train`` (or an ensemble directory).
        backend: "auto", "torch", "onnx" or "onnx-int8".
        threshold: top probability below which a prediction is flagged ``uncertain``
            (None: the run's default).
        device: "cpu" or "cuda".
        precision: "auto", "32" or "bf16" (torch backend).
        tta: "none" or "standard" (test-time augmentation).

    Returns:
        A Predictor; ``predict(paths)`` gives :class:`~cxrkit.inference.predictor.Predictions`.
    """
    from .inference.loader import load_predictor

    return load_predictor(run_dir, device, backend=backend, precision=precision, threshold=threshold, tta=tta)


def adapt(base_run, site, out, *, workers: int = 2, on_stage=None, **settings):
    """Adapt ``base_run`` to the labeled films of a new ``site`` into the run directory ``out``.

    What ``cxr adapt BASE --data SITE --out OUT`` runs: fine-tune on every site film plus films
    replayed from the base's own training split, then refit the calibration on the base's val
    split. ``settings`` are :class:`cxrkit.training.adapt.AdaptSettings` fields (``epochs``,
    ``lr``, ``replay``, ``replay_ratio``, ``site_repeats``, ``anchor``, ``label_map``, ``seed``).
    Returns a :class:`cxrkit.workflows.adapt.AdaptResult`; ``cxrkit.load(out)`` predicts with it.
    Measure before trusting it: :func:`site_report`.
    """
    from .training.adapt import AdaptSettings
    from .workflows.adapt import adapt as _adapt

    return _adapt(base_run, site, out, AdaptSettings(**settings), workers, on_stage=on_stage or (lambda m: None))


def site_report(base_run, site, out, folds: int = 5, shots=(0, 5, 10, 25, None), *, workers: int = 2, **settings):
    """The site report of ``cxr adapt BASE --data SITE --out OUT --folds K``: the base model and the
    adapted one on held-out site patients (``folds`` patient-disjoint folds) for a learning curve
    over ``shots`` labeled patients per label (None: all), then the model adapted on every film
    (``out/model``) and its cost on the base's own test split. Returns the report dict, also
    written to ``out/site_report.json`` with ``site_report.md`` and ``learning_curve.png``.
    """
    from .training.adapt import AdaptSettings
    from .workflows.adapt import site_report as _site_report

    return _site_report(base_run, site, out, folds, tuple(shots), AdaptSettings(**settings), workers)
