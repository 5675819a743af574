"""Which layer a CAM looks at: the last feature map with spatial extent, chosen per backbone.

Known families get a named rule, so the layer has a readable name (``layer4.1``, ``bn2``)
that users can pass back as ``--target-layer``. Any other network falls back to the last
module, in execution order, whose output is a 4-D feature map larger than 1x1: that is what
the classifier pools, whatever the architecture. Every choice is checked against one
forward pass on a dummy input, so a wrong name fails early with the names that would work.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from timm.models.convnext import ConvNeXt
from timm.models.densenet import DenseNet
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import ResNet
from timm.models.vgg import VGG
from torch import nn

from ..errors import CxrkitError
from ..models.resdense import ResDense

__all__ = ["TargetLayerError", "default_layer_name", "feature_map_shapes", "find_target_layer"]

MAX_NAME_DEPTH_LISTED = 2  # error messages list names like "blocks.6", not every conv inside


class TargetLayerError(CxrkitError, ValueError):
    """A ``--target-layer`` that does not name a module producing a 4-D feature map."""


def _last_child(model: nn.Module, parent: str) -> str:
    name, _ = list(model.get_submodule(parent).named_children())[-1]
    return f"{parent}.{name}"


def _last_conv(model: nn.Module, parent: str) -> str:
    convs = [n for n, m in model.get_submodule(parent).named_children() if isinstance(m, nn.Conv2d)]
    return f"{parent}.{convs[-1]}"


# Rules for the families we recommend. EfficientNet: ``bn2`` is conv_head's output after
# its norm and activation (the rectified map the head pools; conv_head alone is pre-BN).
_RULES: dict[type, Callable[[nn.Module], str]] = {
    ResDense: lambda m: _last_child(m, "stages"),
    EfficientNet: lambda m: "bn2",
    ResNet: lambda m: _last_child(m, "layer4"),
    DenseNet: lambda m: _last_child(m, "features"),
    VGG: lambda m: _last_conv(m, "features"),
    ConvNeXt: lambda m: _last_child(m, "stages"),
}


@torch.no_grad()
def feature_map_shapes(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """Output shape of every module that yields a (B, C, H, W) map larger than 1x1, in the
    order the modules finish on one dummy forward pass of ``input_shape`` (C, H, W)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-2] * output.shape[-1] > 1:
                shapes.pop(name, None)  # a module called twice counts where it last ran
                shapes[name] = tuple(output.shape)

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    try:
        param = next(model.parameters())
        was_training = model.training
        model.eval()
        model(torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return shapes


def default_layer_name(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> str:
    """The rule for the model's family when it has one, else the last feature map."""
    for family, rule in _RULES.items():
        if isinstance(model, family):
            name = rule(model)
            if name in shapes:
                return name
    if not shapes:
        raise TargetLayerError(
            f"{type(model).__name__} produces no 4-D feature map larger than 1x1; "
            "CAM methods need a convolutional layer"
        )
    return list(shapes)[-1]


def find_target_layer(
    model: nn.Module, input_shape: tuple[int, int, int], name: str | None = None
) -> tuple[str, nn.Module]:
    """``(name, module)`` of the CAM target layer: ``name`` (dotted, e.g. ``blocks.6``) when
    given, else the default for this backbone. Raises TargetLayerError listing valid names."""
    shapes = feature_map_shapes(model, input_shape)
    if name is None:
        name = default_layer_name(model, shapes)
    elif name not in shapes:
        raise TargetLayerError(_unknown_layer_message(model, name, shapes))
    return name, model.get_submodule(name)


def _unknown_layer_message(model: nn.Module, name: str, shapes: dict[str, tuple[int, ...]]) -> str:
    modules = dict(model.named_modules())
    if name in modules:
        problem = f"{name!r} does not output a feature map (B, C, H, W) larger than 1x1"
    else:
        problem = f"{type(model).__name__} has no module {name!r}"
    close = difflib.get_close_matches(name, list(shapes), n=3, cutoff=0.6)
    listed = [n for n in shapes if n.count(".") < MAX_NAME_DEPTH_LISTED]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return (
        f"{problem}{hint}. Layers with a feature map, channels x height x width (deeper dotted "
        "names work too): " + ", ".join(f"{n} {'x'.join(map(str, shapes[n][1:]))}" for n in listed)
    )
