"""Class activation maps from the ``pytorch_grad_cam`` package, for the run's own Predictor.

The Explainer feeds grad-cam the predictor's preprocessed uint8 images through the
predictor's own ``normalise`` (no re-coded preprocessing) and explains the predicted class,
a given class, or every class. Each call opens the CAM object as a context manager, so its
hooks are removed when the call ends, however many images it explained, and holds the
predictor's lock, so no other thread's forward pass runs through those hooks.

Every method in METHODS runs on timm backbones (tf_efficientnet_lite*, resnet, densenet,
convnext) and on resdense. Left out: ``fullgrad``. grad-cam's FullGrad ignores the target
layer and collects bias layers by exact type (nn.Conv2d, nn.BatchNorm2d); timm's
EfficientNet and DenseNet use BatchNormAct2d and bias-free convs, so on our default model it
finds no layer at all and silently degrades to |input x gradient|.

With a bf16 predictor (``precision`` "bf16", what ``auto`` gives on CPUs with native bf16) the
forward and backward passes run under bf16 autocast, and a hook casts the target layer's output
to fp32 so grad-cam's numpy code gets fp32 activations and gradients. How close those maps are
to fp32 ones is measured (``bench/cam_precision.py``, ``tests/explain/test_cam_precision.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytorch_grad_cam
import torch
import ttach
from pytorch_grad_cam import AblationCAM, ScoreCAM
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from .._precision import autocast
from ..errors import UsageError
from ..inference.loader import with_network
from ..inference.predictor import Predictor
from .defaults import DEFAULT_METHOD, METHOD_CLASSES
from .layers import find_target_layer

__all__ = ["METHODS", "Explainer", "Explanation"]

METHODS: dict[str, type[BaseCAM]] = {name: getattr(pytorch_grad_cam, cls) for name, cls in METHOD_CLASSES.items()}

# ScoreCAM and AblationCAM run the model once per channel of the target layer, this many
# channel variants per forward pass; they also draw a tqdm bar per image on stderr, which
# would tear through the CLI's progress bar.
_PER_CHANNEL = (ScoreCAM, AblationCAM)
CHANNEL_BATCH = 64

# Test-time augmentation for --aug-smooth: contrast and brightness jitter like training's.
# grad-cam's default adds a horizontal flip, which puts the heart on the wrong side of a CXR.
CXR_SMOOTHING = ttach.Compose([ttach.Multiply(factors=[0.9, 1.0, 1.1]), ttach.Add(values=[-0.1, 0.0, 0.1])])


@dataclass
class Explanation:
    """Maps for N images: ``maps[i, k]`` (S, S) in [0, 1] explains class ``classes[i, k]``."""

    maps: np.ndarray  # (N, K, S, S) float32
    classes: np.ndarray  # (N, K) int
    probabilities: np.ndarray  # (N, C) calibrated

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)


class Explainer:
    """CAM maps for preprocessed uint8 images, on the predictor's model and device.

    A predictor that runs an ONNX export (``backend="auto"``, the default, picks one when the run
    has it) has no network to hook: :attr:`predictor` is then the same run on torch
    (:func:`cxrkit.inference.loader.with_network`), so ``Explainer(cxrkit.load(run))`` works whatever the backend.
    ``target_layer`` is a dotted module name (default: chosen per backbone, see
    cxrkit.explain.layers). The predictor's model stops tracking weight gradients: CAMs need
    gradients of activations only, and a backward pass without weight gradients is cheaper.

    Args:
        predictor: the run's predictor (``cxrkit.load(run)``).
        method: the CAM method, e.g. "gradcam", "gradcam++", "eigencam" (``METHOD_CLASSES``).
        target_layer: dotted module name, e.g. "blocks.6" (a wrong one lists the valid ones).
        aug_smooth: average the maps over brightness/contrast variants of the input.
        eigen_smooth: keep the first principal component of the weighted features.
        batch_size: images per CAM pass.
    """

    def __init__(
        self,
        predictor: Predictor,
        method: str = DEFAULT_METHOD,
        target_layer: str | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        batch_size: int = 16,
    ):
        if method not in METHODS:
            raise UsageError(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
        self.predictor = predictor = with_network(predictor)
        self.method = method
        self.aug_smooth = aug_smooth
        self.eigen_smooth = eigen_smooth
        self.batch_size = batch_size
        size = predictor.preprocessing.input_size
        with predictor.lock:  # the layer search hooks every module for one forward pass
            self.layer_name, self.layer = find_target_layer(
                predictor.model, (predictor.preprocessing.channels, size, size), target_layer
            )
            predictor.model.requires_grad_(False)

    def explain(
        self,
        images: np.ndarray,
        target: None | str | int | Sequence[int] = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Explanation:
        """Maps for ``images`` (N, S, S) uint8 from ``predictor.preprocessing.to_uint8``.

        Args:
            images: preprocessed images, (N, S, S) uint8.
            target: None explains each image's predicted class, ``"all"`` every class, an int
                that class for every image, a sequence one class per image.
            progress: called as ``progress(done, total)`` after each batch.

        Returns:
            ``Explanation``: ``maps`` (N, K, S, S) in [0, 1], the explained ``classes`` (N, K)
            and the ``probabilities`` (N, classes).
        """
        images = np.asarray(images)
        probabilities = self.predictor.proba_from_uint8(images)
        classes = self._target_classes(target, probabilities)
        maps = np.zeros((*classes.shape, *images.shape[1:]), np.float32)
        with self._cam() as cam:
            for start in range(0, len(images), self.batch_size):
                stop = min(start + self.batch_size, len(images))
                x = self.model_input(images[start:stop], requires_grad=cam.uses_gradients)
                for k in range(classes.shape[1]):
                    targets = [ClassifierOutputTarget(int(c)) for c in classes[start:stop, k]]
                    maps[start:stop, k] = cam(x, targets, aug_smooth=self.aug_smooth, eigen_smooth=self.eigen_smooth)
                if progress:
                    progress(stop, len(images))
        return Explanation(np.clip(maps, 0.0, 1.0), classes, probabilities)

    def _target_classes(self, target, probabilities: np.ndarray) -> np.ndarray:
        n, n_classes = probabilities.shape
        if target is None:
            classes = probabilities.argmax(1)[:, None]
        elif isinstance(target, str):
            if target != "all":
                raise UsageError(f"target must be None, 'all', a class index or one index per image, got {target!r}")
            classes = np.tile(np.arange(n_classes), (n, 1))
        else:
            classes = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,))[:, None]
        if classes.size and not (0 <= classes.min() and classes.max() < n_classes):
            raise UsageError(f"class index out of range 0..{n_classes - 1}")
        return classes

    def model_input(self, batch: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
        """uint8 images (B, S, S) -> the model's input through the predictor's normalisation,
        channels_last like the model. Gradient methods need ``requires_grad``: with frozen
        weights nothing else makes autograd build a graph."""
        return self.predictor.model_input(batch).requires_grad_(requires_grad)

    @contextlib.contextmanager
    def _cam(self):
        """The grad-cam object for this method, its hooks in place only inside the block."""
        model, cls = self.predictor.model, METHODS[self.method]
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.predictor.lock)
            if cls in _PER_CHANNEL:
                stack.enter_context(contextlib.redirect_stderr(stack.enter_context(open(os.devnull, "w"))))
            if self.predictor.precision == "bf16":  # registered before grad-cam's hooks, so they see fp32
                stack.callback(self.layer.register_forward_hook(_as_float32).remove)
                stack.enter_context(autocast("bf16", self.predictor.device.type))
            if cls is AblationCAM:  # a fresh ablation layer: grad-cam's default one is shared and keeps activations
                cam = AblationCAM(model, [self.layer], ablation_layer=AblationLayer(), batch_size=CHANNEL_BATCH)
            else:
                cam = cls(model, [self.layer])
            cam.batch_size = CHANNEL_BATCH  # ScoreCAM reads it
            cam.tta_transforms = CXR_SMOOTHING
            stack.enter_context(cam)
            try:
                yield cam
            except IndexError as exc:  # grad-cam's __exit__ would swallow it and leave blank maps
                raise RuntimeError(f"{self.method} failed on layer {self.layer_name}: {exc}") from exc


def _as_float32(module, inputs, output):
    """Forward hook: the target layer's output in fp32 (grad-cam turns it into numpy)."""
    return output.float() if torch.is_tensor(output) and output.dtype != torch.float32 else None
