"""What a backbone hands its classifier: pooled features, for one batch or a cached image set.

The audit probes them for confounds; the fast linear probe (``--cache-features``) trains the
head on them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..data.transforms import Preprocessing


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the classifier sees: timm's ``forward_head(forward_features(x), pre_logits=True)``
    (the resdense nets implement the same two methods)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


@torch.inference_mode()
def backbone_features(
    model: nn.Module,
    images: np.ndarray,
    preprocessing: Preprocessing,
    rows: np.ndarray,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Pooled features (len(rows), F) of the cached uint8 ``images[rows]``, model in eval mode."""
    was_training = model.training
    model.eval().to(device)
    out = []
    for start in range(0, len(rows), batch_size):
        batch = torch.from_numpy(np.asarray(images[np.sort(rows[start : start + batch_size])]))
        order = np.argsort(np.argsort(rows[start : start + batch_size]))  # memmap reads want sorted rows
        x = preprocessing.normalise(batch[:, None].to(device)).contiguous(memory_format=torch.channels_last)
        out.append(pooled_features(model, x).float().cpu().numpy()[order])
        if progress:
            progress(min(start + batch_size, len(rows)), len(rows))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
