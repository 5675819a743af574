"""Predictions as JSON and CSV: the documents ``cxr predict`` writes, testable without a CLI."""

from __future__ import annotations

import csv
import io

from .._meta import RESEARCH_NOTICE
from .predictor import Predictions, Predictor


def predictions_json(preds: Predictions, predictor: Predictor, threshold: float) -> dict:
    """Results and errors with what is needed to read them: model, backend, calibration, notice."""
    return {
        "notice": RESEARCH_NOTICE,
        "model_id": predictor.model_id,
        "backend": predictor.backend,
        "precision": predictor.precision,
        "classes": predictor.classes,
        "temperature": predictor.temperature,
        "threshold": threshold,
        "results": [r.to_dict() for r in preds.results],
        "errors": [e.to_dict() for e in preds.errors],
    }


def predictions_csv(preds: Predictions, classes: list[str]) -> str:
    """One row per input: results first, then failed inputs with their reason in ``error``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "predicted_class", "confidence", "uncertain", *(f"p_{c}" for c in classes), "error"])
    for r in preds.results:
        writer.writerow(
            [
                r.name,
                r.predicted_class,
                f"{r.confidence:.6f}",
                str(r.uncertain).lower(),
                *(f"{r.probabilities[c]:.6f}" for c in classes),
                "",
            ]
        )
    for e in preds.errors:
        writer.writerow([e.name, "", "", "", *([""] * len(classes)), e.reason])
    return buf.getvalue()
