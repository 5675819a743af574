"""Run a trained model on a dataset split and measure it: metrics with CIs, ROC,
calibration (temperature fitted on val, saved into the run), subgroups.

Everything lands in one JSON-ready dict (``metrics.json``); plots and the HTML report are
drawn from it, so no number in the report is computed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from .. import RESEARCH_NOTICE
from .._io import atomic_write_json
from ..data.cache import cached_images
from ..data.dataset import CxrDataset
from ..data.prepare import prepare
from ..errors import UsageError
from ..inference.predictor import Predictor
from ..training.rundir import CARD_FILE, read_card
from .bootstrap import bootstrap_ci
from .calibration import calibration_summary, fit_temperature, softmax_t
from .metrics import classification_metrics, confusion

DEFAULT_RESAMPLES = 1000
EVALUATION_FORMAT = "cxrkit-evaluation/1"


@dataclass
class SplitPredictions:
    dataset: CxrDataset  # the records that were predicted, in order
    y_true: np.ndarray
    logits: np.ndarray
    classes: list[str]
    excluded: dict
    missing_classes: list[str]

    def probs(self, temperature: float = 1.0) -> np.ndarray:
        return softmax_t(self.logits, temperature)

    @property
    def patient_groups(self) -> list[str | None] | None:
        """Patient ids for the bootstrap, or None when the data has none (resample images)."""
        ids = [r.patient_id for r in self.dataset.records]
        return ids if any(ids) else None


def is_external(card: dict, data: str | Path) -> bool:
    """True when ``data`` is not the run's training data (a CSV counts as its folder)."""
    path = Path(data).expanduser().resolve()
    root = path.parent if path.is_file() else path
    return root != Path(card["data"]["path"]).resolve()


def predict_split(predictor: Predictor, data: str | Path | None = None, split: str | None = None,
                  workers: int = 2, cache_dir: str | Path | None = None) -> SplitPredictions:
    """Logits of the model on ``split`` ("train", "val", "test" or "all") of ``data``.

    ``data`` defaults to the run's training data, read with the run's own split; other data
    (external validation) is used whole (``split`` "all"). Classes are matched by name:
    images of classes the model does not know are left out and counted.
    """
    card = predictor.run.card
    data = data or card["data"]["path"]
    external = is_external(card, data)
    split = split or ("all" if external else "test")
    if external and split != "all":
        raise UsageError(f"{data} is not the data this model was trained on, so it has no "
                         f"{split!r} split of this run; evaluate it whole with --split all")
    split_file = None if split == "all" else predictor.run.run_dir / "split.csv"
    prep = prepare(data, predictor.classes, split_file=split_file, workers=workers, cache_dir=cache_dir)
    ds = prep.dataset if split == "all" else prep.split.subset(prep.dataset, split)
    if len(ds) == 0:
        raise UsageError(f"the {split} split of {data} is empty")
    images = cached_images(ds, predictor.preprocessing, cache_dir, workers=workers)
    missing = [c for c, n in prep.dataset.class_counts().items() if n == 0]
    return SplitPredictions(ds, ds.labels, predictor.logits_from_uint8(images), predictor.classes,
                            dict(prep.dataset.excluded), missing)


def summarize(y_true: np.ndarray, probs: np.ndarray, classes: list[str], groups=None,
              n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Every metric with a bootstrap 95% CI (resampling patients when ``groups`` are given)."""
    ci = bootstrap_ci(lambda idx: classification_metrics(y_true[idx], probs[idx], classes),
                      len(y_true), groups=groups, n_resamples=n_resamples, seed=seed)
    cm = confusion(y_true, probs.argmax(1), len(classes))
    return {
        "n_images": int(len(y_true)),
        "bootstrap": {"resamples": n_resamples, "unit": "patient" if groups is not None else "image",
                      "seed": seed, "level": 0.95},
        "metrics": ci,
        "confusion": {"classes": list(classes), "counts": cm.tolist(),
                      "row_normalised": (cm / np.maximum(cm.sum(1, keepdims=True), 1)).round(4).tolist()},
    }


def roc_curves(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    out = {}
    for i, c in enumerate(classes):
        positives = y_true == i
        if 0 < positives.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positives, probs[:, i])
            out[c] = {"fpr": fpr.round(5).tolist(), "tpr": tpr.round(5).tolist(),
                      "auc": float(np.trapezoid(tpr, fpr))}
    return out


def calibrate_run(predictor: Predictor, workers: int = 2, cache_dir=None) -> dict:
    """Fit the temperature on the run's val split and save it into the model card."""
    val = predict_split(predictor, None, "val", workers, cache_dir)
    temperature = fit_temperature(val.logits, val.y_true)
    run_dir = predictor.run.run_dir
    card = read_card(run_dir)
    card["calibration"] = {
        "temperature": temperature, "fitted_on": "val", "val_images": int(len(val.y_true)),
        "val_nll_before": calibration_summary(val.y_true, val.probs())["nll"],
        "val_nll_after": calibration_summary(val.y_true, val.probs(temperature))["nll"]}
    atomic_write_json(run_dir / CARD_FILE, card)
    predictor.run.card = card
    return card["calibration"]


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, split: str | None = None,
                 by: list[str] | None = None, n_resamples: int = DEFAULT_RESAMPLES, workers: int = 2,
                 cache_dir=None, predictor: Predictor | None = None,
                 preds: SplitPredictions | None = None) -> dict:
    """Evaluate the run on ``data``/``split``; returns the ``metrics.json`` dict.

    ``predictor`` and ``preds`` (from :func:`predict_split`) may be passed to reuse them.
    """
    from .subgroups import subgroup_results

    predictor = predictor or Predictor.from_run(run_dir)
    cal = calibrate_run(predictor, workers, cache_dir)
    preds = preds or predict_split(predictor, data, split, workers, cache_dir)
    classes, y = preds.classes, preds.y_true
    before, after = preds.probs(), preds.probs(cal["temperature"])
    groups = preds.patient_groups
    columns = by or []
    unknown = [c for c in columns if c not in preds.dataset.metadata_columns]
    if unknown:
        raise UsageError(f"no column(s) {', '.join(unknown)} in the data's metadata; available: "
                         f"{', '.join(preds.dataset.metadata_columns) or 'none'}")
    warnings = []
    if preds.missing_classes:
        warnings.append(f"model classes with no images in this data: {', '.join(preds.missing_classes)}")
    if preds.excluded:
        warnings.append("left out, not model classes: " + ", ".join(f"{k} ({v})" for k, v in preds.excluded.items()))
    subgroups = {c: subgroup_results(y, after, classes, [r.metadata.get(c, "") for r in preds.dataset.records],
                                     groups, n_resamples) for c in columns}
    for col, res in subgroups.items():
        warnings += [f"{col}={v}: {r['warning']}" for v, r in res.items() if r["warning"]]
    card = predictor.run.card
    return {
        "format": EVALUATION_FORMAT,
        "notice": RESEARCH_NOTICE,
        "run": {"dir": str(predictor.run.run_dir), "model": card["model"]["name"], "classes": classes,
                "weights_source": card.get("weights_source"), "split_hash": card["split"]["hash"]},
        "data": {"path": str(preds.dataset.root), "split": split or ("all" if is_external(card, preds.dataset.root)
                                                                    else "test"),
                 "n_images": int(len(y)), "excluded": preds.excluded, "missing_classes": preds.missing_classes,
                 "external": is_external(card, preds.dataset.root)},
        "overall": summarize(y, after, classes, groups, n_resamples),
        "roc": roc_curves(y, after, classes),
        "calibration": {"temperature": cal["temperature"], "fitted_on": "val",
                        "before": calibration_summary(y, before), "after": calibration_summary(y, after)},
        "subgroups": subgroups,
        "warnings": warnings,
    }
