"""ResDense: the project's from-scratch CNN, residual stages built from dense blocks.

Each stage downsamples once, then runs a dense block: every conv unit sees the
concatenation of the stage input and all earlier unit outputs (DenseNet), so early
features are reused without being recomputed. A 1x1 transition projects the
concatenation back to the stage width and the stage input is added on top (ResNet),
which keeps gradients short however deep the block gets.

The variants are registered in timm, so ``timm.create_model("resdense_small",
num_classes=3, in_chans=1)`` works like any timm name and timm's tooling
(``features_only``, ``reset_classifier``, data config) applies. No pretrained
weights exist: these nets are trained from scratch on chest X-rays, grayscale by
default.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from timm.layers import ClassifierHead, get_act_layer
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ..errors import UsageError

__all__ = ["ResDense", "ResDenseStage"]


class ConvBnAct(nn.Sequential):
    """Conv (no bias, BN follows) -> BatchNorm -> optional activation."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        act_layer: type[nn.Module] | None = nn.ReLU,
    ):
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, bias=False),
                bn=nn.BatchNorm2d(out_chs),
                act=act_layer(inplace=True) if act_layer else nn.Identity(),
            )
        )


class ResDenseStage(nn.Module):
    """Downsample, then ``act(transition(concat(x, u1, .., un)) + x)``.

    ``units[k]`` sees ``width + k * growth`` channels and adds ``growth``; the
    transition has no activation of its own so the residual sum stays linear until
    the stage's final activation, as in a ResNet basic block.
    """

    def __init__(
        self,
        in_chs: int,
        width: int,
        depth: int,
        growth: int,
        stride: int,
        act_layer: type[nn.Module],
    ):
        super().__init__()
        if stride == 1 and in_chs == width:
            self.downsample = nn.Identity()
        else:
            self.downsample = ConvBnAct(in_chs, width, 3, stride, act_layer)
        self.units = nn.ModuleList(ConvBnAct(width + k * growth, growth, 3, 1, act_layer) for k in range(depth))
        self.transition = ConvBnAct(width + depth * growth, width, 1, 1, act_layer=None)
        # A fresh stage is the identity on its shortcut, which trains deep stacks from scratch.
        nn.init.zeros_(self.transition.bn.weight)
        self.act = act_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x)
        features = [shortcut]
        for unit in self.units:
            features.append(unit(torch.cat(features, dim=1)))
        return self.act(self.transition(torch.cat(features, dim=1)) + shortcut)


class ResDense(nn.Module):
    """Stem (two stride-2 3x3 convs) -> residual dense stages -> avg pool, dropout, linear.

    The first stage keeps the stem's resolution and each later one halves it, so
    four stages end at stride 32 (7x7 at 224px). ``stages[-1]`` is the last conv
    stage, the usual Grad-CAM target.
    """

    def __init__(
        self,
        *,
        depths: Sequence[int],
        widths: Sequence[int],
        growth_rates: int | Sequence[int],
        stem_width: int,
        in_chans: int = 1,
        num_classes: int = 3,
        drop_rate: float = 0.0,
        act_layer: str | type[nn.Module] = "relu",
        global_pool: str = "avg",
    ):
        """``depths``: conv units per stage; ``widths``: channels per stage;
        ``growth_rates``: channels each unit adds (one for all stages, or per stage)."""
        super().__init__()
        if isinstance(growth_rates, int):
            growth_rates = (growth_rates,) * len(depths)
        if not len(depths) == len(widths) == len(growth_rates):
            raise UsageError(
                f"depths {tuple(depths)}, widths {tuple(widths)} and growth_rates "
                f"{tuple(growth_rates)} must have one entry per stage"
            )
        act = get_act_layer(act_layer)
        self.in_chans = in_chans
        self.num_classes = num_classes

        self.stem = nn.Sequential(
            ConvBnAct(in_chans, stem_width // 2, 3, 2, act),
            ConvBnAct(stem_width // 2, stem_width, 3, 2, act),
        )
        self.feature_info = [dict(num_chs=stem_width, reduction=4, module="stem.1")]
        stages = []
        in_chs, reduction = stem_width, 4
        for index, (depth, width, growth) in enumerate(zip(depths, widths, growth_rates, strict=True)):
            stride = 1 if index == 0 else 2
            reduction *= stride
            stages.append(ResDenseStage(in_chs, width, depth, growth, stride, act))
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f"stages.{index}"))
            in_chs = width
        self.stages = nn.Sequential(*stages)

        self.num_features = self.head_hidden_size = in_chs
        self.head = ClassifierHead(in_chs, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for convs (PyTorch's default suits linear layers, not ReLU convs)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter groups: the stem, then one group per stage (per unit when not coarse),
        so ``--finetune last-N`` counts stages as blocks, as it does for timm's own models."""
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [(r"^stages\.(\d+)\.units\.(\d+)", None), (r"^stages\.(\d+)", (99999,))],
        )

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the linear head (``num_classes=0`` leaves pooled features)."""
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 3,
        "input_size": (1, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5,),
        "std": (0.5,),
        "first_conv": "stem.0.conv",
        "classifier": "head.fc",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"resdense_tiny": _cfg(), "resdense_small": _cfg(), "resdense_base": _cfg()})

# Registered variants: about 0.34M, 1.1M and 3.7M parameters with a 3-class head.
VARIANTS = {
    "resdense_tiny": dict(depths=(2, 2, 2, 2), widths=(32, 64, 96, 128), growth_rates=16, stem_width=24),
    "resdense_small": dict(depths=(2, 2, 3, 2), widths=(48, 96, 160, 256), growth_rates=32, stem_width=32),
    "resdense_base": dict(depths=(3, 3, 4, 3), widths=(64, 128, 256, 512), growth_rates=48, stem_width=32),
}


def _create(variant: str, pretrained: bool, **kwargs) -> ResDense:
    return build_model_with_cfg(
        ResDense,
        variant,
        pretrained,
        feature_cfg=dict(flatten_sequential=True),
        **dict(VARIANTS[variant], **kwargs),
    )


@register_model
def resdense_tiny(pretrained: bool = False, **kwargs) -> ResDense:
    return _create("resdense_tiny", pretrained, **kwargs)


@register_model
def resdense_small(pretrained: bool = False, **kwargs) -> ResDense:
    return _create("resdense_small", pretrained, **kwargs)


@register_model
def resdense_base(pretrained: bool = False, **kwargs) -> ResDense:
    return _create("resdense_base", pretrained, **kwargs)
