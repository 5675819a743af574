"""Old run directories predict exactly as before: probabilities recorded with cxrkit at 610fccc
(tests/fixtures/predictions_610fccc.json) for cards of every contrast mode and several sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrkit.inference import Predictor
from cxrkit.models.factory import build_classifier
from cxrkit.models.loading import save_weights

FIXTURES = Path(__file__).parents[1] / "fixtures"
RECORDED = json.loads((FIXTURES / "predictions_610fccc.json").read_text())["probabilities"]
VARIANTS = {
    "percentile32": {},
    "equalize48": {"contrast": "equalize", "input_size": 48},
    "clahe40": {"contrast": "clahe", "input_size": 40},
    "none32": {"contrast": "none"},
}


def _images() -> list[np.ndarray]:
    """Five films, non-square, as uint8, uint16 and float: each decoder output the chain takes."""

    def smooth(seed):
        coarse = (np.random.default_rng(seed).random((8, 8)) * 255).astype(np.uint8)
        return np.array(Image.fromarray(coarse).resize((70, 60), Image.BICUBIC))

    u8 = [smooth(s) for s in range(3)]
    return u8 + [u8[0].astype(np.uint16) * 257 + 3, (u8[1] / 255.0).astype(np.float32) ** 1.5]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_run_from_610fccc_predicts_the_recorded_probabilities(name, tmp_path):
    card = json.loads((FIXTURES / "model_card_784c882.json").read_text())
    card["preprocessing"].update(VARIANTS[name])
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    torch.manual_seed(0)
    model, _ = build_classifier("resdense_tiny", 3, in_chans=1, pretrained=False)
    save_weights(tmp_path, model)
    got = Predictor.from_run(tmp_path, backend="torch", precision="32").predict_proba(_images())
    np.testing.assert_allclose(got, np.array(RECORDED[name]), rtol=0, atol=1e-6)
