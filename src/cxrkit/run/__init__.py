"""The run layer, at the bottom of the house: the run directory and its model card.

Plain data, no torch: every step (training writes, everything downstream reads) goes through
these names, so a run directory's layout and card are declared in one place::

    run = RunDir("runs/lite0")           # run.weights, run.card, run.split, run.metrics, ...
    card = read_card(run)                # typed ModelCard, validated
    update_card(run, "calibration", {...})   # one section, atomically

    with run_lock(run, "train"):          # one writer at a time (lock beside the folder)
        ...

Rebuilding the network from a run needs torch: :func:`cxrkit.models.load_run`.
"""

from .card import (
    CARD_FORMAT,
    Calibration,
    ModelCard,
    ModelSpec,
    PreprocessingSpec,
    RunError,
    git_commit,
    package_versions,
    read_card,
    update_card,
    write_card,
)
from .layout import RunDir
from .lock import RunLockedError, describe_holder, live_holder, lock_path, run_lock, writes_run

__all__ = [
    "CARD_FORMAT",
    "Calibration",
    "ModelCard",
    "ModelSpec",
    "PreprocessingSpec",
    "RunDir",
    "RunError",
    "RunLockedError",
    "describe_holder",
    "git_commit",
    "live_holder",
    "lock_path",
    "package_versions",
    "read_card",
    "run_lock",
    "update_card",
    "write_card",
    "writes_run",
]
