"""Inference: the one Predictor every downstream command uses, and the ONNX export.

Public face::

    predictor = cxrkit.load("runs/lite0")                      # == Predictor.from_run(...)
    files, missing, ignored = find_images(["a.png", "scans/"])  # folders searched recursively
    out = predictor.predict(files)                             # .results (Prediction), .errors (Failure)
    export_onnx("runs/lite0")                                  # RUN_DIR/model.onnx + the card's onnx section

Names load on first use, so importing this package (e.g. for the CLI's defaults) does not
import torch.
"""

from .defaults import BACKENDS, DEFAULT_THRESHOLD

_LAZY = {
    "Predictor": "predictor",
    "Prediction": "predictor",
    "Predictions": "predictor",
    "Failure": "predictor",
    "softmax": "predictor",
    "load_predictor": "loader",
    "find_images": "inputs",
    "export_onnx": "export",
    "ExportError": "export",
}

__all__ = ["BACKENDS", "DEFAULT_THRESHOLD", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
