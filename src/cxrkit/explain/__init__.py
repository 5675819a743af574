"""Explanations: CAM maps over pytorch_grad_cam, overlays, dataset summaries, faithfulness.

Public face::

    explainer = Explainer(cxrkit.load("runs/lite0"), "gradcam")   # target layer chosen per backbone
    exp = explainer.explain(uint8_images, target="all")          # .maps (N, K, S, S) in [0, 1]
    explain_files(explainer, ["scans/"], "out/")                  # overlay PNG + .npy per file
    write_summary("out/", explain_split(explainer, split="test"), compare_methods(...))

Names load on first use, so importing this package (e.g. for the CLI's defaults) does not
import torch.
"""

from .defaults import DEFAULT_METHOD, METHOD_CLASSES, SLOW_METHODS

_LAZY = {
    "METHODS": "cams",
    "Explainer": "cams",
    "Explanation": "cams",
    "TargetLayerError": "layers",
    "find_target_layer": "layers",
    "overlay_figure": "overlay",
    "explain_files": "image_files",
    "ExplainedFiles": "image_files",
    "explain_split": "summary",
    "write_summary": "summary",
    "SplitExplanations": "summary",
    "compare_methods": "faithfulness",
    "road_scores": "faithfulness",
    "CamOverlays": "cam_png",
}

__all__ = ["DEFAULT_METHOD", "METHOD_CLASSES", "SLOW_METHODS", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
