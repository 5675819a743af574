"""Grad-CAM in bf16: the maps of a bf16 predictor stay close to fp32 ones (same peak, high
correlation), and the hooks and autocast leave nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import hook_count


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_bf16_maps_match_fp32(tiny_run, blob_images, method):
    from cxrkit.explain.cams import Explainer
    from cxrkit.explain.faithfulness import map_agreement
    from cxrkit.inference.predictor import Predictor

    images, _ = blob_images
    fp32 = Explainer(Predictor.from_run(tiny_run.run_dir, precision="32"), method).explain(images)
    bf16_predictor = Predictor.from_run(tiny_run.run_dir, precision="bf16")
    bf16 = Explainer(bf16_predictor, method).explain(images)
    corr, peak = map_agreement(fp32.maps[:, 0], bf16.maps[:, 0])
    assert (fp32.classes == bf16.classes).all()
    assert np.median(corr) > 0.95 and corr.min() > 0.8, corr
    assert np.median(peak) <= 2 and (peak <= 0.1 * images.shape[-1]).mean() >= 0.9, peak
    assert not np.array_equal(fp32.maps, bf16.maps)  # it did run in bf16
    assert hook_count(bf16_predictor.model) == 0
    import torch

    assert not torch.is_autocast_enabled("cpu")
