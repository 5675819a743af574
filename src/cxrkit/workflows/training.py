"""``train_ready``: train, then fit the run's calibration on val, so a trained run is ready at once.

Why: the temperature and the other-abnormal threshold used to be fitted by ``cxr evaluate``, so a
run that was only trained predicted with no other-abnormal flag (0 of 721 external films flagged;
343 after ``cxr evaluate``), and evaluating silently changed what the run predicted. Now the
training job writes them and ``evaluate`` only reads them (it still fits them, once, for a run
saved before this change).
"""

from __future__ import annotations

from collections.abc import Callable

from ..evaluation.evaluate import calibrate_run
from ..inference.defaults import NETWORK_BACKEND
from ..inference.loader import load_predictor
from ..run import read_card
from ..training import TrainConfig
from ..training.fit import TrainResult, train


def calibrate_trained(result: TrainResult, workers: int = 2, cache_dir=None, on_stage=lambda m: None) -> TrainResult:
    """Fit ``result``'s temperature and other-abnormal threshold on its val split (rank 0 only)."""
    if result.card is None:  # another process of a distributed run: rank 0 writes
        return result
    on_stage("fitting the temperature and the other-abnormal threshold on val")
    calibrate_run(load_predictor(result.run_dir, backend=NETWORK_BACKEND), workers, cache_dir)
    result.card = read_card(result.run_dir)
    return result


def train_ready(
    config: TrainConfig,
    resume: bool = False,
    progress_bar: bool = True,
    on_stage: Callable[[str], None] = lambda m: None,
    data_progress: Callable[[int, int], None] | None = None,
    callbacks: tuple = (),
) -> TrainResult:
    """:func:`cxrkit.training.train` (same arguments), then :func:`calibrate_trained`."""
    result = train(
        config,
        resume=resume,
        progress_bar=progress_bar,
        on_stage=on_stage,
        data_progress=data_progress,
        callbacks=callbacks,
    )
    return calibrate_trained(result, config.workers, config.cache_dir, on_stage)
