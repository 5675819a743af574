"""Is a predicted lung mask plausible? A bad segmentation is reported, never silently used.

Checks, in order (the first failure is the reason):

* ``no lung``: under ``MIN_FRACTION`` (2%) of the image;
* ``one lung``: fewer than two components of at least ``MIN_LOBE_SHARE`` (10%) of the mask,
  or the two largest do not lie on both sides of the image's vertical midline;
* ``lung fraction F outside [lo, hi]``: the range seen in training (the card stores the 1st
  and 99th percentile of the training masks, widened by a quarter of their spread each side;
  the 344 ieee8023 masks run from 0.17 to 0.62, 1st-99th percentile 0.20-0.56, giving
  about [0.11, 0.65]).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_FRACTION = 0.02
MIN_LOBE_SHARE = 0.10
DEFAULT_RANGE = (0.08, 0.70)


def fraction_range(fractions, widen: float = 0.25) -> tuple[float, float]:
    """The accepted range from training masks' lung fractions (see the module doc)."""
    lo, hi = np.percentile(np.asarray(fractions, dtype=float), [1, 99])
    pad = widen * (hi - lo)
    return float(max(MIN_FRACTION, lo - pad)), float(min(1.0, hi + pad))


def quality(mask: np.ndarray, fraction_range: tuple[float, float] = DEFAULT_RANGE) -> tuple[bool, str]:
    """(ok, reason) for one (H, W) bool mask; reason is ``"ok"`` when ok."""
    mask = np.asarray(mask, dtype=bool)
    frac = float(mask.mean())
    if frac < MIN_FRACTION:
        return False, f"no lung (lung fraction {frac:.3f})"
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    big = np.flatnonzero(sizes >= MIN_LOBE_SHARE * sizes.sum()) + 1
    if len(big) < 2:
        return False, "one lung (one large component)"
    two = big[np.argsort(sizes[big - 1])[-2:]]
    # column centroids by one weighted bincount: ndimage.center_of_mass took 2 ms of the 3 ms
    # this check cost per 192-px mask, a third of the roi: lungs step (bench/lungs_roi_speed.py)
    cols = np.broadcast_to(np.arange(mask.shape[1], dtype=np.float64), mask.shape).ravel()
    cx = np.bincount(labels.ravel(), weights=cols, minlength=n + 1)[two] / sizes[two - 1]
    mid = mask.shape[1] / 2
    if not (cx.min() < mid < cx.max()):
        return False, "one lung (both large components on one side)"
    lo, hi = fraction_range
    if not lo <= frac <= hi:
        return False, f"lung fraction {frac:.3f} outside [{lo:.3f}, {hi:.3f}] seen in training"
    return True, "ok"
