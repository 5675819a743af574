"""Lightning checkpoints written atomically and read back without unpickling code."""

from __future__ import annotations

import io
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .._io import atomic_write_bytes


class SafeCheckpointIO(TorchCheckpointIO):
    """Save to a temporary file and rename (a crash never leaves a torn ``last.ckpt``);
    load with ``weights_only=True`` whatever the caller asks (tensors and plain types only)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(path, buf.getvalue())

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None):
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
