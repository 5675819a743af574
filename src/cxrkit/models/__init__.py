"""Models: timm backbones or our residual-dense net, with weights from a recorded source.

Importing this package registers ``resdense_tiny/small/base`` in timm's registry.
"""

from . import resdense  # noqa: F401  (registers the resdense_* names in timm)
from .factory import DEFAULT_MODEL, ModelInfo, create_model, keep_outputs, list_models
from .features import backbone_features, pooled_features
from .loading import LoadedRun, load_run, preprocessing_of, save_weights
from .weights import (
    LoadedWeights,
    WeightsError,
    create_with_weights,
    load_state_dict_into,
    load_weights_file,
    read_state_dict,
)

__all__ = [
    "DEFAULT_MODEL",
    "LoadedRun",
    "LoadedWeights",
    "ModelInfo",
    "WeightsError",
    "backbone_features",
    "create_model",
    "create_with_weights",
    "keep_outputs",
    "list_models",
    "load_run",
    "load_state_dict_into",
    "load_weights_file",
    "pooled_features",
    "preprocessing_of",
    "read_state_dict",
    "save_weights",
]
