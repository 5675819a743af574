"""Target layer choice: a named rule per backbone family, a generic fallback, overrides."""

from __future__ import annotations

import pytest
import timm
from torch import nn

from cxrkit.explain.layers import TargetLayerError, find_target_layer

SHAPE = (1, 64, 64)


@pytest.mark.parametrize(
    "name, layer",
    [
        ("resdense_tiny", "stages.3"),
        ("tf_efficientnet_lite0", "bn2"),
        ("resnet18", "layer4.1"),
        ("densenet121", "features.norm5"),
        ("convnext_atto", "stages.3"),
    ],
)
def test_default_layer_per_family(name, layer):
    model = timm.create_model(name, num_classes=3, in_chans=1).eval()
    found, module = find_target_layer(model, SHAPE)
    assert found == layer
    assert module is model.get_submodule(layer)


def test_unknown_family_falls_back_to_the_last_feature_map():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    name, module = find_target_layer(model, SHAPE)
    assert name == "3"  # the ReLU after the last conv; the 1x1 pooled map does not count
    assert module is model[3]


def test_a_dotted_name_overrides_the_default():
    model = timm.create_model("tf_efficientnet_lite0", num_classes=3, in_chans=1)
    name, module = find_target_layer(model, SHAPE, "blocks.5")
    assert name == "blocks.5" and module is model.blocks[5]


def test_a_wrong_name_lists_the_valid_ones():
    model = timm.create_model("resdense_tiny", num_classes=3, in_chans=1)
    with pytest.raises(TargetLayerError, match="no module 'stages.9'") as err:
        find_target_layer(model, SHAPE, "stages.9")
    assert "did you mean" in str(err.value) and "stages.3 128x2x2" in str(err.value)
    with pytest.raises(TargetLayerError, match="'head.fc' does not output a feature map"):
        find_target_layer(model, SHAPE, "head.fc")
