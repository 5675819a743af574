"""Fast linear probe: the frozen backbone's pooled features computed once, the head trained on them.

With ``--finetune head --cache-features`` an epoch is a pass over a small feature matrix
instead of through the backbone: seconds instead of minutes on a CPU, handy for a first look
at a dataset or for sweeping head settings. The price: no augmentation (the features come
from the un-augmented images once).
"""

from __future__ import annotations

from .module import CxrClassifier


class FeatureHeadClassifier(CxrClassifier):
    """:class:`CxrClassifier` over precomputed features: ``model`` is the backbone's own head
    module, trained in place, so the full model holds the trained head afterwards."""

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch  # (B, 1, F) from the image loader's channel axis
        return x.flatten(1).float(), y
