"""Models: timm backbones or our residual-dense net, with weights from a recorded source.

Importing this package registers ``resdense_tiny/small/base`` in timm's registry.
"""

from . import resdense  # noqa: F401  (registers the resdense_* names in timm)
from .factory import DEFAULT_MODEL, ModelInfo, build_classifier, recommended_models
from .features import backbone_features, pooled_features
from .loading import LoadedRun, keep_outputs, load_run, preprocessing_of, save_weights
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
    "build_classifier",
    "create_with_weights",
    "recommended_models",
    "keep_outputs",
    "load_run",
    "load_state_dict_into",
    "load_weights_file",
    "pooled_features",
    "preprocessing_of",
    "read_state_dict",
    "save_weights",
]

# Renamed: timm's functions of these names return other things (a model; every timm name).
_RENAMED = {"create_model": "build_classifier", "list_models": "recommended_models"}


def __getattr__(name: str):
    if name in _RENAMED:
        import warnings

        warnings.warn(
            f"cxrkit.models.{name} is renamed {_RENAMED[name]} (it differs from timm.{name}); the old name will go",
            FutureWarning,
            stacklevel=2,
        )
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
