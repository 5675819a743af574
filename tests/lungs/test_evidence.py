"""Real lung masks in the evidence: the audit's occlusion tests and the CAM summary say which
lung field they used (predicted masks of a lung run, or the fixed box as the named fallback)."""

from __future__ import annotations

import re

import numpy as np

from cxrkit.lungs.locate import FIXED_BOX, region_masks

from .conftest import two_lobe


def test_region_masks_predict_each_image_and_name_the_fallback(lung_run):
    films = [two_lobe(s) for s in (200, 201, 202)]
    images = np.stack([f for f, _ in films] + [np.full((96, 96), 100, np.uint8)])
    masks, region = region_masks(images, lung_run[0])
    assert region["source"] == "predicted" and region["fallback_images"] == 1
    assert region["region"].startswith(f"predicted lung masks ({lung_run[0]})") and "1 of 4 images" in region["region"]
    for predicted, (_, truth) in zip(masks, films):
        assert (predicted & truth).sum() / (predicted | truth).sum() > 0.6  # the lobes, not a box
    np.testing.assert_array_equal(masks[3], region_masks(images[3:])[0][0])  # failed: the fixed box
    box, named = region_masks(images)
    assert named == {"region": FIXED_BOX, "source": "box", "fallback_images": 4} and box.shape == images.shape
    data_masks = np.stack([m for _, m in films] + [films[0][1]])
    assert region_masks(images, None, data_masks)[1]["source"] == "data"


def test_audit_uses_the_classifiers_own_lung_run_and_names_it(roi_run, tiny_run, lung_run):
    from cxrkit.evaluation.audit import audit_run
    from cxrkit.inference import Predictor

    result, data, cache = roi_run
    audit = audit_run(Predictor.from_run(result.run_dir), split="all", cache_dir=cache, workers=1)
    own = Predictor.from_run(result.run_dir).preprocessing.lung_run_dir  # the run's own copy, resolved
    assert audit["lung_region"]["source"] == "predicted" and audit["lung_region"]["lung_run"] == own
    assert all(o["region"].startswith(f"predicted lung masks ({own})") for o in audit["occlusion"])
    plain = audit_run(Predictor.from_run(tiny_run.run_dir), split="test", workers=1)
    assert plain["lung_region"]["region"] == FIXED_BOX and plain["occlusion"][0]["region"] == FIXED_BOX


def test_cam_summary_names_the_region_it_measured(roi_run, tiny_run, lung_run):
    from cxrkit.explain import Explainer
    from cxrkit.explain.summary import explain_split
    from cxrkit.inference import Predictor

    result, data, cache = roi_run
    summary = explain_split(Explainer(Predictor.from_run(result.run_dir)), split="all", cache_dir=cache, workers=1)
    assert summary.lung_region.startswith("predicted lung masks (")
    blobs = explain_split(
        Explainer(Predictor.from_run(tiny_run.run_dir)), split="test", workers=1, lung_run=lung_run[0]
    )
    n = len(blobs.images)  # blob films have no lungs: (nearly) every image falls back to the box, and it says so
    named = re.fullmatch(
        rf"predicted lung masks \((.+)\); (.+) for (\d+) of {n} images whose mask failed the quality check",
        blobs.lung_region,
    )
    assert named and named[1] == str(lung_run[0]) and named[2] == FIXED_BOX and int(named[3]) >= n // 2
