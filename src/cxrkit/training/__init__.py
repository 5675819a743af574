"""Training: Lightning module, fit loop and run directories.

Public face: ``train(TrainConfig(data=..., out=...))`` writes a run directory
(:mod:`cxrkit.run` declares it; ``cxrkit.models.load_run`` rebuilds the model from it). Names other than
``TrainConfig`` load on first use, so importing this package does not import Lightning.
"""

from .config import TrainConfig

_LAZY = {"train": "fit", "TrainResult": "fit", "prepare_data": "fit"}
_ELSEWHERE = {
    "LoadedRun": "cxrkit.models",
    "load_run": "cxrkit.models",
    "RunError": "cxrkit.run",
    "read_card": "cxrkit.run",
}  # kept here for scripts written against 0.1

__all__ = ["TrainConfig", *_LAZY, *_ELSEWHERE]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
