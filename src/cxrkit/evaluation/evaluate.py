"""Run a trained model on a dataset split and measure it: metrics with CIs, ROC,
calibration (temperature fitted on val, saved into the run), subgroups.

Everything lands in one JSON-ready dict (``metrics.json``); plots and the HTML report are
drawn from it, so no number in the report is computed twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._meta import RESEARCH_NOTICE
from ..errors import UsageError
from ..inference.defaults import NETWORK_BACKEND
from ..inference.loader import load_predictor
from ..inference.predictor import Predictor
from ..inference.splits import SplitPredictions, is_external, predict_split
from ..run import update_card
from .abnormal import NORMAL, abnormal_results
from .calibration import calibration_summary, fit_temperature
from .protocol import protocol_label, run_protocol
from .subgroups import column_values, missing_columns, subgroup_results
from .summaries import DEFAULT_RESAMPLES, roc_curves, summarize

# Fewer val images than this give a temperature that is noise (see calibrate_run).
MIN_CALIBRATION_IMAGES = 30
EVALUATION_FORMAT = "cxrkit-evaluation/1"


def calibrate_run(predictor: Predictor, workers: int = 2, cache_dir=None, allow_sharpening: bool = False) -> dict:
    """Fit the temperature on the run's val split and save it into the model card.

    Below ``MIN_CALIBRATION_IMAGES`` val images the temperature stays 1.0 and the card says
    why: one scalar fitted on 6 images (seen in a real run) is noise that then rescales every
    later answer's confidence.
    """
    val = predict_split(predictor, None, "val", workers, cache_dir)
    n = int(len(val.y_true))
    optimum = fit_temperature(val.logits, val.y_true) if n >= MIN_CALIBRATION_IMAGES else 1.0
    # No sharpening (T < 1) by default: on an independent set the val-fitted T ~ 0.5 raised the
    # ECE from 0.031 to 0.076 (issue 16); val is drawn from the training sources and rewards
    # overconfidence that does not travel. Softening (T > 1) is kept.
    temperature = optimum if allow_sharpening else max(1.0, optimum)
    card = update_card(
        predictor.run.run_dir,
        "calibration",
        {
            "temperature": temperature,
            "fitted_on": "val"
            if n >= MIN_CALIBRATION_IMAGES
            else f"not fitted: {n} val images < {MIN_CALIBRATION_IMAGES}",
            "val_images": n,
            "val_nll_before": calibration_summary(val.y_true, val.probs())["nll"],
            "val_nll_after": calibration_summary(val.y_true, val.probs(temperature))["nll"],
            "val_optimum": optimum,
            "rule": "fitted T" if allow_sharpening else "max(1, fitted T): no sharpening",
            **_other_abnormal_threshold(val, temperature),
        },
    )
    predictor.run.card = card
    return card.to_dict()["calibration"]


def run_calibration(predictor: Predictor, workers: int = 2, cache_dir=None) -> dict:
    """The run's calibration as ``cxr train`` (or ``cxr adapt``) fitted it; fitted here, once, only
    for a run saved before training fitted it. Evaluating never changes what a run predicts."""
    card = predictor.run.card
    if card.calibration is not None:
        return card.to_dict()["calibration"]
    return calibrate_run(predictor, workers, cache_dir)


# The "other abnormal" flag fires on at most this share of val's normal films.
OTHER_ABNORMAL_NORMALS_FLAGGED = 0.05


def _other_abnormal_threshold(val: SplitPredictions, temperature: float) -> dict:
    """``{"other_abnormal": {...}}`` for a model with auxiliary outputs (else ``{}``).

    The threshold is the 95th percentile of val's normal films' other-abnormal probability (of
    all val films without a ``normal`` class): a declared operating point chosen on val, never
    on the evaluated data. Why not argmax over every output: on external/ that called 62-70% of
    NIH normals "pneumonia" (nih/README), so the auxiliary mass needs its own operating point.
    """
    other = val.other_abnormal(temperature)
    if other is None:
        return {}
    pool = other[val.y_true == val.classes.index(NORMAL)] if NORMAL in val.classes else other
    which = "normal films" if NORMAL in val.classes else "films"
    if len(pool) < MIN_CALIBRATION_IMAGES:
        return {"other_abnormal": {"threshold": None, "rule": f"not fitted: {len(pool)} val {which}"}}
    return {
        "other_abnormal": {
            "threshold": float(np.quantile(pool, 1 - OTHER_ABNORMAL_NORMALS_FLAGGED)),
            "rule": f"flags {OTHER_ABNORMAL_NORMALS_FLAGGED:.0%} of val {which}",
            "val_images": int(len(pool)),
        }
    }


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: str | None = None,
    by: list[str] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    workers: int = 2,
    cache_dir=None,
    predictor: Predictor | None = None,
    preds: SplitPredictions | None = None,
    abnormal: list[str] | None = None,
) -> dict:
    """Evaluate the run on ``data``/``split``; returns the ``metrics.json`` dict.

    ``predictor`` and ``preds`` (from :func:`predict_split`) may be passed to reuse them.
    ``abnormal``: labels that are not model classes, scored by the rule of
    :mod:`cxrkit.evaluation.abnormal` (``metrics.json["abnormal"]``).
    """
    predictor = predictor or load_predictor(run_dir, backend=NETWORK_BACKEND)
    cal = run_calibration(predictor, workers, cache_dir)
    preds = preds or predict_split(predictor, data, split, workers, cache_dir, abnormal=abnormal)
    classes, y = preds.classes, preds.y_true
    before, after = preds.probs(), preds.probs(cal["temperature"])
    groups = preds.patient_groups
    columns = by or []
    unknown = missing_columns(columns, preds.dataset.metadata_columns)
    if unknown:
        raise UsageError(
            f"no column(s) {', '.join(unknown)} in the data's metadata; available: "
            f"{', '.join(preds.dataset.metadata_columns) or 'none'}"
        )
    card = predictor.run.card
    external = is_external(card, preds.dataset)
    split = split or ("all" if external else "test")
    protocol = run_protocol(predictor.run.run_dir, card, external, workers, cache_dir)
    warnings = []
    absent = [c for k, c in enumerate(classes) if not (y == k).any() and c not in preds.missing_classes]
    if absent:  # e.g. leave-source-out: the held-out source has no covid images
        where = protocol_label({**protocol, "leaky": False, "test_missing_classes": []}, split)
        warnings.append(
            f"no images of {', '.join(absent)} in the {where}: their sensitivity is n/a, "
            "and accuracy is the sensitivity of the classes present"
        )
    if preds.missing_classes:
        warnings.append(f"model classes with no images in this data: {', '.join(preds.missing_classes)}")
    if preds.excluded:
        warnings.append("left out, not model classes: " + ", ".join(f"{k} ({v})" for k, v in preds.excluded.items()))
    if preds.skipped:  # metrics over the rest must never hide that files were dropped
        shown = "; ".join(f"{s['path']}: {s['reason']}" for s in preds.skipped[:5])
        more = f" (+{len(preds.skipped) - 5} more in metrics.json)" if len(preds.skipped) > 5 else ""
        warnings.append(f"{len(preds.skipped)} unreadable file(s) skipped, not in these metrics: {shown}{more}")
    subgroups = {
        c: subgroup_results(y, after, classes, column_values(preds.dataset.records, c), groups, n_resamples)
        for c in columns
    }
    for col, res in subgroups.items():
        warnings += [f"{col}={v}: {r['warning']}" for v, r in res.items() if r["warning"]]
    return {
        "format": EVALUATION_FORMAT,
        "notice": RESEARCH_NOTICE,
        "run": {
            "dir": str(predictor.run.run_dir),
            "model": card.model.name,
            "classes": classes,
            "weights_source": card.weights_source,
            "split_hash": card.split_hash,
        },
        "data": {
            "path": [p["path"] for p in preds.dataset.parts] if preds.dataset.parts else str(preds.dataset.root),
            "split": split,
            "n_images": int(len(y)),
            "excluded": preds.excluded,
            "missing_classes": preds.missing_classes,
            "skipped": preds.skipped,
            "external": external,
        },
        "protocol": protocol,
        "overall": summarize(y, after, classes, groups, n_resamples),
        "roc": roc_curves(y, after, classes),
        "calibration": {
            "temperature": cal["temperature"],
            "fitted_on": "val",
            "before": calibration_summary(y, before),
            "after": calibration_summary(y, after),
        },
        "subgroups": subgroups,
        "abnormal": _abnormal_section(
            preds, classes, after, cal["temperature"], columns, n_resamples, predictor.other_abnormal_threshold
        ),
        "warnings": warnings,
    }


def _abnormal_section(
    preds: SplitPredictions, classes, probs, temperature, columns, n_resamples, threshold=None
) -> dict | None:
    """``metrics.json["abnormal"]`` for the films scored by the abnormal rule, or None."""
    abn = preds.abnormal
    if abn is None or len(abn.dataset) == 0:
        return None
    if NORMAL not in classes:
        raise UsageError(f"--abnormal needs a model class named 'normal'; this model has {', '.join(classes)}")
    normals = preds.y_true == classes.index(NORMAL)
    ids = [r.patient_id for r in abn.dataset.records]
    normal_ids = [r.patient_id for r in preds.dataset.records]
    other, normal_other = abn.other_abnormal(temperature), preds.other_abnormal(temperature)
    return abnormal_results(
        abn.probs(temperature),
        [r.label for r in abn.dataset.records],
        probs[normals],
        classes,
        groups=ids if any(ids) else None,
        normal_groups=[i for i, m in zip(normal_ids, normals) if m] if any(normal_ids) else None,
        by={
            c: column_values(abn.dataset.records, c)
            for c in columns
            if not missing_columns([c], abn.dataset.metadata_columns)
        },
        n_resamples=n_resamples,
        other=other,
        normal_other=None if normal_other is None else normal_other[normals],
        threshold=threshold,
    )
