"""The shared lung masks (../shared/data/lungmasks, read in place) pass the mask checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrkit.data import read_image
from cxrkit.lungs import mask_pairs, quality, read_mask
from cxrkit.lungs.train import patient_split

MANIFEST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lungmasks" / "manifest.csv"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not MANIFEST.is_file(), reason=f"real lung masks not present: {MANIFEST}"),
]


def test_all_344_masks_read_and_look_like_two_lungs():
    pairs = mask_pairs(MANIFEST)
    assert len(pairs) == 344 and all(p.patient_id for p in pairs)
    flagged = []
    for p in pairs:
        mask = read_mask(p.mask, read_image(p.image).shape)
        ok, reason = quality(mask, (0.1, 0.7))
        if not ok:
            flagged.append((p.mask.name, reason))
    assert flagged == []  # manual masks: the quality flag must not fire on any of them
    roles = patient_split(pairs, 0.1, 0.2, seed=0)
    by_role = {r: {p.patient_id for p, x in zip(pairs, roles) if x == r} for r in ("train", "val", "test")}
    assert not (by_role["train"] & by_role["test"]) and not (by_role["val"] & by_role["test"])
    assert 0.15 < np.mean([x == "test" for x in roles]) < 0.3


def test_the_lungmasks_folder_reads_as_its_manifest():
    assert mask_pairs(MANIFEST.parent) == mask_pairs(MANIFEST)
