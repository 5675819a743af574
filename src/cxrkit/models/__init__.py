"""Models: timm backbones or our residual-dense net, with weights from a recorded source.

Importing this package registers ``resdense_tiny/small/base`` in timm's registry.
"""

from cxrkit.models import resdense  # noqa: F401  (registers the resdense_* names in timm)
from cxrkit.models.factory import DEFAULT_MODEL, ModelInfo, create_model, list_models
from cxrkit.models.features import backbone_features, pooled_features
from cxrkit.models.weights import (
    LoadedWeights,
    WeightsError,
    create_with_weights,
    load_state_dict_into,
    load_weights_file,
    read_state_dict,
)

__all__ = [
    "DEFAULT_MODEL",
    "LoadedWeights",
    "ModelInfo",
    "WeightsError",
    "backbone_features",
    "create_model",
    "create_with_weights",
    "list_models",
    "load_state_dict_into",
    "load_weights_file",
    "pooled_features",
    "read_state_dict",
]
