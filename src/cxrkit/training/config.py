"""The training configuration: plain data, saved as ``config.yaml`` in every run directory.

Kept free of heavy imports so the command line can show ``--help`` and defaults instantly.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import yaml

from ..errors import UsageError

# Same as cxrkit.models.DEFAULT_MODEL (a test checks); repeated so this module stays light.
DEFAULT_MODEL = "tf_efficientnet_lite0"
CONFIG_FILE = "config.yaml"


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.yaml`` in the run directory."""

    data: str
    out: str
    classes: str | None = None
    model: str = DEFAULT_MODEL
    pretrained: bool = True
    weights: str | None = None
    input_size: int | None = None  # None: the backbone's pretrained input size
    contrast: str = "percentile"
    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    balance: str = "loss"
    finetune: str = "full"
    cache_features: bool = False  # with finetune="head": train the head on features computed once
    augment: bool = True
    patience: int = 5
    seed: int = 0
    split_file: str | None = None
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    dup_threshold: int = 36
    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None  # None: bf16/16-mixed on GPU, 32 on CPU
    channels_last: bool = True
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache_dir: str | None = None
    max_minutes: float | None = None

    def to_yaml(self) -> str:
        d = dataclasses.asdict(self)
        d["fractions"] = list(self.fractions)
        return yaml.safe_dump(d, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "TrainConfig":
        d = yaml.safe_load(text) or {}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UsageError(f"unknown config key(s): {', '.join(sorted(unknown))}")
        if "fractions" in d:
            d["fractions"] = tuple(d["fractions"])
        return cls(**d)
