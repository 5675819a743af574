"""Evaluation: metrics with patient-level bootstrap confidence intervals, calibration, subgroups, audit.

Reads predictions (:mod:`cxrkit.inference.splits`), never trains.
"""

from .bootstrap import bootstrap_ci
from .evaluate import evaluate_run
from .metrics import classification_metrics, confusion
from .summaries import summarize

__all__ = ["bootstrap_ci", "classification_metrics", "confusion", "evaluate_run", "summarize"]
