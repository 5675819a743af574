"""Evaluation: metrics with patient-level bootstrap confidence intervals."""

from .bootstrap import bootstrap_ci
from .evaluate import SplitPredictions, evaluate_run, predict_split, summarize
from .metrics import classification_metrics, confusion

__all__ = ["bootstrap_ci", "classification_metrics", "confusion", "SplitPredictions", "evaluate_run", "predict_split",
           "summarize"]
