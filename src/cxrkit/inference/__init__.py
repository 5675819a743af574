"""Inference: the one Predictor every downstream command uses."""

from .predictor import Predictor, softmax

__all__ = ["Predictor", "softmax"]
