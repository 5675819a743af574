"""Predictions as JSON and CSV: the documents ``cxr predict`` writes, testable without a CLI."""

from __future__ import annotations

from .._io import csv_text
from .._meta import RESEARCH_NOTICE
from .predictor import Predictions, Predictor
from .tta import describe


def predictions_json(preds: Predictions, predictor: Predictor, threshold: float) -> dict:
    """Results and errors with what is needed to read them: model, backend, calibration, notice."""
    return {
        "notice": RESEARCH_NOTICE,
        "model_id": predictor.model_id,
        "backend": predictor.backend,
        "precision": predictor.precision,
        "classes": predictor.classes,
        "temperature": predictor.temperature,
        **describe(predictor.tta),
        "ensemble_members": getattr(predictor, "member_ids", None),
        "threshold": threshold,
        **_other_section(predictor),
        **_roi_section(predictor),
        "results": [{**r.to_dict(), **_roi_flag(predictor, r.name)} for r in preds.results],
        "errors": [e.to_dict() for e in preds.errors],
    }


def _other_section(predictor) -> dict:
    """With auxiliary outputs: what ``other_abnormal`` sums and the flag's threshold."""
    if not predictor.aux_classes:
        return {}
    return {
        "other_abnormal": {
            "outputs": predictor.aux_classes,
            "threshold": predictor.other_abnormal_threshold,
            **({"threshold_rule": predictor.other_abnormal_rule} if hasattr(predictor, "other_abnormal_rule") else {}),
            "meaning": "probability of an abnormality that is none of the classes; a flagged film needs a "
            "reader whatever predicted_class says (threshold fitted on val; None until `cxr evaluate` ran)",
        }
    }


def _roi_section(predictor) -> dict:
    """With ``roi: lungs``: the ROI settings (lung run and its weights' sha256; per member for an
    ensemble whose members differ)."""
    settings = predictor.preprocessing.roi_settings()
    return {"roi": settings} if settings else {}


def _roi_flag(predictor, name: str) -> dict:
    """``roi_fallback``: why this input got the whole film instead of its lungs (None: it got them)."""
    if predictor.preprocessing.roi == "none":
        return {}
    return {"roi_fallback": predictor.roi_fallback(name)}


# models with auxiliary outputs: the "other abnormal" probability and its flag (fitted on val)
OTHER_COLUMNS = ["p_other_abnormal", "other_abnormal_flag"]


def predictions_csv(preds: Predictions, classes: list[str], roi_fallback=None) -> str:
    """One row per input: results first, then failed inputs with their reason in ``error``;
    ``roi_fallback`` (``Predictor.roi_fallback`` of a ``roi: lungs`` run) adds that column.

    Quoted per RFC 4180; a file name starting with ``= + - @`` is written with a leading ``'``
    so a spreadsheet shows it instead of running it (:func:`cxrkit._io.csv_cell`)."""
    roi = [] if roi_fallback is None else ["roi_fallback"]
    other = OTHER_COLUMNS if any(r.other_abnormal is not None for r in preds.results) else []
    head = ["file", "predicted_class", "confidence", "uncertain", *(f"p_{c}" for c in classes), *other, "error", *roi]
    rows = [head]
    for r in preds.results:
        rows.append(
            [
                r.name,
                r.predicted_class,
                f"{r.confidence:.6f}",
                str(r.uncertain).lower(),
                *(f"{r.probabilities[c]:.6f}" for c in classes),
                *([f"{r.other_abnormal:.6f}", str(r.other_abnormal_flag).lower()] if other else []),
                "",
                *([roi_fallback(r.name) or ""] if roi else []),
            ]
        )
    for e in preds.errors:
        rows.append([e.name, "", "", "", *([""] * (len(classes) + len(other))), e.reason, *([""] if roi else [])])
    return csv_text(rows)
