"""Training: Lightning module, fit loop and run directories.

Public face: ``train(TrainConfig(data=..., out=...))`` writes a run directory;
``load_run(run_dir)`` rebuilds the trained model from it. Names other than
``TrainConfig`` load on first use, so importing this package does not import Lightning.
"""

from .config import TrainConfig

_LAZY = {"train": "fit", "TrainResult": "fit", "LoadedRun": "rundir", "RunError": "rundir",
         "load_run": "rundir", "read_card": "rundir"}

__all__ = ["TrainConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
