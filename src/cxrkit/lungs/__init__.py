"""Lung fields: a lung segmenter trained from masks the user has, and what uses its masks.

Public face (torch is imported only by the names that need it)::

    card = train_lungs("lungmasks/manifest.csv", "runs/lungs")     # cxr lungs train
    seg = LungSegmenter.from_run("runs/lungs")
    masks = seg.predict_masks(uint8_images)                        # (N, H, W) bool
    ok, reason = quality(masks[0], seg.fraction_range)
    box = lung_roi_box(masks[0], margin=0.05)                      # None: use the whole image
    crop = crop_to_roi(image, box)
"""

from .locate import crop_to_roi, lung_roi_box, scale_box
from .masks import MaskError, MaskPair, mask_pairs, read_mask
from .quality import fraction_range, quality

_LAZY = {
    "LungSegmenter": "segmenter",
    "lung_masks_for": "segmenter",
    "train_lungs": "train",
    "LungTrainConfig": "config",
    "predict_to_dir": "predict",
}

__all__ = [
    "MaskError",
    "MaskPair",
    "mask_pairs",
    "read_mask",
    "fraction_range",
    "quality",
    "crop_to_roi",
    "lung_roi_box",
    "scale_box",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
