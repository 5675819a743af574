"""Explain settings the CLI needs before torch is imported (``cxr --help`` stays fast)."""

from __future__ import annotations

DEFAULT_METHOD = "gradcam"
# --method name -> pytorch_grad_cam class. Left out: FullGrad (see cxrkit.explain.cams).
METHOD_CLASSES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",  # class-agnostic: first principal component of the feature map
    "scorecam": "ScoreCAM",  # one forward pass per channel of the target layer
    "ablationcam": "AblationCAM",  # one forward pass per channel of the target layer
}
SLOW_METHODS = ("scorecam", "ablationcam")  # minutes per image at 224 px on a CPU
