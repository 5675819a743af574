"""The lung segmenter's training configuration: plain data, and the source of its CLI flags.

Like :class:`cxrkit.training.TrainConfig`, every field carries its help text and ``cxr lungs
train`` builds its flags from the fields (:mod:`cxrkit.cli._config_args`), so a default is
written once, here, and the flag names are the classifier's (``--input-size``, ``--epochs``...).
No torch at import: ``cxr lungs train --help`` reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError


def _f(default, help: str, **meta):
    return field(default=default, metadata={"help": help, "group": "lung model", **meta})


@dataclass
class LungTrainConfig:
    """Everything that defines a lung segmentation run (recorded in its ``lung_card.json``)."""

    arch: str = _f("unet_small", "network", choices=("unet_small", "lite0_unet"))
    # 128 px: val Dice 0.954 as at 192 px (runs/lungs vs runs/lungs128, 40 epochs each) at 0.44x the
    # network's work, which brings the roi: lungs step from 5.5 to 4.5 ms per film and its cost in
    # end-to-end prediction from +27% to +12% (bench/results/lungs_roi_speed.md)
    input_size: int = _f(128, "network input size in px, a multiple of 32 (128: val Dice as at 192 px, 2.2x less work)")
    epochs: int = _f(40, "training epochs")
    batch_size: int = _f(16, "images per step")
    lr: float = _f(3e-3, "peak learning rate (AdamW, warm-up then cosine)")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    max_minutes: float = _f(15.0, "stop after this many minutes (the best val checkpoint is kept)")
    seed: int = _f(0, "seed of the patient split and of training")
    val_fraction: float = _f(0.1, "share of patients in val")
    test_fraction: float = _f(0.2, "share of patients in test")
    pretrained: bool = _f(True, "ImageNet encoder weights (lite0_unet only)")
    threads: int | None = _f(None, "torch threads while training (1 is ~10x faster on an oversubscribed CPU)")

    def __post_init__(self):
        if self.input_size % 32 or self.input_size < 32:
            raise UsageError(f"--input-size {self.input_size}: must be a multiple of 32")
