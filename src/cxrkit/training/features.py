"""Fast linear probe: the frozen backbone's pooled features computed once, the head trained on them.

With ``--finetune head --cache-features`` an epoch is a pass over a small feature matrix
instead of through the backbone: seconds instead of minutes on a CPU, handy for a first look
at a dataset or for sweeping head settings. The price: no augmentation (the features come
from the un-augmented images once).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..data.transforms import Preprocessing
from ..models import pooled_features
from .module import CxrClassifier


@torch.inference_mode()
def backbone_features(model: nn.Module, images: np.ndarray, preprocessing: Preprocessing, rows: np.ndarray,
                      batch_size: int = 64, device: str | torch.device = "cpu",
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Pooled features (len(rows), F) of the cached uint8 ``images[rows]``, model in eval mode."""
    was_training = model.training
    model.eval().to(device)
    out = []
    for start in range(0, len(rows), batch_size):
        batch = torch.from_numpy(np.asarray(images[np.sort(rows[start:start + batch_size])]))
        order = np.argsort(np.argsort(rows[start:start + batch_size]))  # memmap reads want sorted rows
        x = preprocessing.normalise(batch[:, None].to(device)).contiguous(memory_format=torch.channels_last)
        out.append(pooled_features(model, x).float().cpu().numpy()[order])
        if progress:
            progress(min(start + batch_size, len(rows)), len(rows))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class FeatureHeadClassifier(CxrClassifier):
    """:class:`CxrClassifier` over precomputed features: ``model`` is the backbone's own head
    module, trained in place, so the full model holds the trained head afterwards."""

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch  # (B, 1, F) from the image loader's channel axis
        return x.flatten(1).float(), y
