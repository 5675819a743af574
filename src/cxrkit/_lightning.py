"""Lightning's chatter that says nothing about a cxrkit run, silenced once for both trainers
(the classifier's and the lung segmenter's): tips, notes on our deliberate choices."""

from __future__ import annotations

import logging
import warnings

QUIET = (
    ".*on_after_batch_transfer.*",
    ".*LeafSpec.*",
    ".*number of training batches.*",
    ".*does not have many workers.*",
    ".*Checkpoint directory .* exists and is not empty.*",
    # a run stopped by a signal resumes mid-epoch (training/stop.py): the rest of that epoch
    # draws its batches afresh, which docs/training.md states
    ".*resuming from a checkpoint that ended before the epoch ended.*",
)


def quiet_lightning() -> None:
    """Banners and tips off; lightning.fabric's lines stay (a DDP run says which rank started)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for pattern in QUIET:
        warnings.filterwarnings("ignore", message=pattern)
