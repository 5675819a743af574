"""Shortcut audit: does the model look at the lungs, or at age, source and markers?

Measured, not asserted (DeGrave et al. 2021; Roberts et al. 2021):

1. **Confound probes.** A logistic-regression probe on the trained model's penultimate
   features predicts a metadata attribute (``population``, ``subsource``) and, with the same
   probe and features, the class. Fitted on the train split, scored on the evaluated images
   (balanced accuracy). Probes *within one class* (e.g. pediatric vs adult among normals)
   show what the features encode beyond the disease. Each probe is repeated on the image itself,
   block-averaged to 12 x 12 pixels (``pixel_balanced_accuracy``): on the shared CXR data those
   144 numbers already tell pediatric from adult normals at 0.987, a trained lite0's features
   at 0.988 (``docs/results/probe_floor.md``), so a high probe can mean that the films differ,
   not that the classifier learnt more than they show.
2. **Adult-only view.** Metrics restricted to adults (``population`` values starting with
   "adult"): with pediatric pneumonia and adult COVID, this removes the age shortcut.
3. **Occlusion.** Balanced accuracy when the central lung field is hidden, when only it is
   kept, and when a border band (text, arrows, markers) is blanked. The lung field is the
   predicted lung mask of every image when a lung run is given (``--lung-run``, or the
   classifier's own with ``roi: lungs``; :mod:`cxrkit.lungs.locate`), else the data's masks
   when every image has one, else the documented fixed box; ``lung_region`` names which.
   Hidden pixels are set to the image's mean intensity, so no new edge or colour is introduced.
4. **Verdict** written from these numbers by :func:`verdict` (rules in its docstring).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.cache import cached_images
from ..data.dataset import CxrDataset
from ..data.groups import group_value
from ..data.prepare import prepare
from ..data.regions import BORDER_BAND, border_mask, occlude
from ..inference.loader import with_network
from ..inference.predictor import Predictor
from ..inference.splits import SplitPredictions, is_external, predict_split
from ..lungs.locate import LUNG_BOX, lung_box_mask, lung_fields
from ..models import backbone_features
from ..run import RunDir

# probed where the data has them; view: does the model tell AP (bedside) from PA within a class?
AUDIT_COLUMNS = ("population", "subsource", "view")
MIN_PER_VALUE = 10  # attribute values with fewer train images are left out of a probe
SHORTCUT_RETAINED = 0.5  # share of above-chance balanced accuracy kept with lungs hidden


def penultimate_features(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    """Pooled features before the classifier of every image (:func:`cxrkit.models.backbone_features`)."""
    return backbone_features(
        predictor.model, images, predictor.preprocessing, np.arange(len(images)), device=predictor.device
    )


PIXEL_SIDE = 12  # block-averaged image side of the pixel baseline probe


def pixel_features(images: np.ndarray, side: int = PIXEL_SIDE) -> np.ndarray:
    """(N, S, S) uint8 images -> (N, side * side) float32 block means (S cut to a multiple of side):
    the input-level baseline that each confound probe is compared with."""
    n, s = images.shape[0], images.shape[1] // side * side
    x = np.asarray(images[:, :s, :s], np.float32).reshape(n, side, s // side, side, s // side)
    return x.mean(axis=(2, 4)).reshape(n, side * side)


def with_pixel_baseline(probes: list[dict], pixel_probes: list[dict]) -> list[dict]:
    """``probes`` with ``pixel_balanced_accuracy`` of the same attribute and scope on pixel features."""
    by = {(p["attribute"], p["scope"]): p["balanced_accuracy"] for p in pixel_probes}
    return [{**p, "pixel_balanced_accuracy": by.get((p["attribute"], p["scope"]))} for p in probes]


def _probe(f_train, y_train, f_test, y_test) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced", C=0.1))
    clf.fit(f_train, y_train)
    return float(balanced_accuracy_score(y_test, clf.predict(f_test)))


def confound_probes(f_train, train_ds: CxrDataset, f_eval, eval_ds: CxrDataset, columns: list[str]) -> list[dict]:
    """Probe each column overall and within each class; the class probe is the yardstick.

    Evaluated images that the probes trained on are left out: a probe scored on its own
    training images reads memorised labels, not what the features encode.
    """
    seen = {r.path.resolve() for r in train_ds.records}
    unseen = np.array([r.path.resolve() not in seen for r in eval_ds.records], bool)
    y_tr, y_ev = train_ds.labels, eval_ds.labels
    class_ba = (
        _probe(f_train, y_tr, f_eval[unseen], y_ev[unseen]) if len(set(y_ev[unseen].tolist())) > 1 else float("nan")
    )
    results = []
    for col in columns:
        # grouped as the de-confounding heads see them: "adult (assumed)" is adult, and
        # "ieee8023:COVID-19" is the source ieee8023 (cxrkit.data.groups)
        a_tr = np.array([group_value(col, r.metadata.get(col, "")) or "unknown" for r in train_ds.records])
        a_ev = np.array([group_value(col, r.metadata.get(col, "")) or "unknown" for r in eval_ds.records])
        scopes = [("all classes", np.ones(len(a_tr), bool), unseen)]
        scopes += [(f"within {c}", y_tr == k, unseen & (y_ev == k)) for k, c in enumerate(train_ds.classes)]
        for scope, m_tr, m_ev in scopes:
            values, counts = np.unique(a_tr[m_tr], return_counts=True)
            keep = [v for v, n in zip(values, counts) if n >= MIN_PER_VALUE and v not in ("", "unknown")]
            sel_tr = m_tr & np.isin(a_tr, keep)
            sel_ev = m_ev & np.isin(a_ev, keep)
            if len(keep) < 2 or len(set(a_ev[sel_ev].tolist())) < 2:
                continue
            results.append(
                {
                    "attribute": col,
                    "scope": scope,
                    "values": [str(v) for v in keep],
                    "n_train": int(sel_tr.sum()),
                    "n_eval": int(sel_ev.sum()),
                    "balanced_accuracy": _probe(f_train[sel_tr], a_tr[sel_tr], f_eval[sel_ev], a_ev[sel_ev]),
                    "chance": 1.0 / len(keep),
                    "class_balanced_accuracy": class_ba,
                }
            )
    return results


def _scores(predictor: Predictor, images: np.ndarray, y: np.ndarray) -> dict:
    pred = predictor.logits_from_uint8(images).argmax(1)
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(balanced_accuracy_score(y, pred))}


def occlusion_tests(
    predictor: Predictor, images: np.ndarray, y: np.ndarray, masks: np.ndarray | None, region: str | None = None
) -> list[dict]:
    size = images.shape[-1]
    lungs = masks if masks is not None else lung_box_mask(size)
    region = region or ("lung masks" if masks is not None else "central box (fixed LUNG_BOX)")
    conditions = [
        ("original", images),
        ("lungs hidden", occlude(images, lungs)),
        ("only lungs kept", occlude(images, ~lungs)),
        ("border band blanked", occlude(images, border_mask(size))),
    ]
    return [{"condition": name, "region": region, **_scores(predictor, imgs, y)} for name, imgs in conditions]


def adult_only(preds: SplitPredictions, temperature: float, column: str = "population") -> dict | None:
    """Accuracy and per-class sensitivity among adults, or None without such a column."""
    values = [r.metadata.get(column, "") for r in preds.dataset.records]
    keep = np.array([v.lower().startswith("adult") for v in values])
    if not keep.any():
        return None
    y = preds.y_true[keep]
    pred = preds.probs(temperature)[keep].argmax(1)
    present = sorted(set(y.tolist()))
    return {
        "n_images": int(keep.sum()),
        "class_counts": {preds.classes[k]: int((y == k).sum()) for k in present},
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "sensitivity": {preds.classes[k]: float((pred[y == k] == k).mean()) for k in present},
    }


def verdict(occlusion: list[dict], probes: list[dict], adults: dict | None, n_classes: int) -> str:
    """A short paragraph from the numbers. Rules:

    * lungs hidden keeps >= 50% of the above-chance balanced accuracy -> shortcut risk;
    * border band blanked costs > 5 points of balanced accuracy -> relies on the border;
    * only-lungs-kept balanced accuracy within 5 points of original -> lungs carry the signal;
    * a within-class attribute probe >= 0.75 balanced accuracy -> features encode the attribute;
    * an attribute probe over all classes within 0.05 of the class probe -> "as predictable";
    * adult-only balanced accuracy > 5 points below the overall balanced accuracy -> performance
      leans on the age split (balanced, because the class mix among adults differs).
    """
    chance = 1.0 / n_classes
    by = {o["condition"]: o["balanced_accuracy"] for o in occlusion}
    orig, hidden = by["original"], by["lungs hidden"]
    lines = []
    retained = (hidden - chance) / max(orig - chance, 1e-9)
    if retained >= SHORTCUT_RETAINED:
        lines.append(
            f"With the lung field hidden the model keeps {retained:.0%} of its above-chance "
            f"balanced accuracy ({hidden:.3f} vs {orig:.3f}): it can classify from outside the "
            "lungs, a shortcut risk."
        )
    else:
        lines.append(
            f"Hiding the lung field drops balanced accuracy to {hidden:.3f} (from {orig:.3f}): "
            "the decision depends mostly on the lung region."
        )
    if orig - by["border band blanked"] > 0.05:
        lines.append(
            f"Blanking the border band costs {orig - by['border band blanked']:.3f} balanced accuracy: "
            "text, markers or borders influence predictions."
        )
    if orig - by["only lungs kept"] <= 0.05:
        lines.append("Keeping only the lung field preserves performance.")
    for p in probes:
        if p["scope"] == "all classes" and p["balanced_accuracy"] >= p["class_balanced_accuracy"] - 0.05:
            lines.append(
                f"The model's features predict '{p['attribute']}' (balanced accuracy "
                f"{p['balanced_accuracy']:.3f}) as well as the class ({p['class_balanced_accuracy']:.3f})."
            )
        if p["scope"].startswith("within") and p["balanced_accuracy"] >= 0.75:
            pixels = p.get("pixel_balanced_accuracy")
            lines.append(
                f"{p['scope'].capitalize()}, the features tell '{p['attribute']}' apart with balanced "
                f"accuracy {p['balanced_accuracy']:.3f}: they encode it beyond the disease"
                + (
                    f" (the {PIXEL_SIDE} x {PIXEL_SIDE} block-averaged image alone: {pixels:.3f}, "
                    "so the films themselves differ)."
                    if pixels is not None and pixels >= 0.75
                    else "."
                )
            )
    if adults is not None:
        weakest = min(adults["sensitivity"], key=adults["sensitivity"].get)
        if orig - adults["balanced_accuracy"] > 0.05:
            lines.append(
                f"Among adults ({adults['n_images']} images) balanced accuracy is "
                f"{adults['balanced_accuracy']:.3f} vs {orig:.3f} overall ({weakest} sensitivity "
                f"{adults['sensitivity'][weakest]:.3f}): part of the headline comes from the age "
                "split between classes."
            )
        else:
            lines.append(
                f"Among adults ({adults['n_images']} images) balanced accuracy is "
                f"{adults['balanced_accuracy']:.3f}, close to the overall {orig:.3f}."
            )
    return " ".join(lines)


def audit_run(
    predictor: Predictor,
    data=None,
    split: str | None = None,
    columns: list[str] | None = None,
    workers: int = 2,
    cache_dir=None,
    preds: SplitPredictions | None = None,
    lung_run=None,
) -> dict:
    """All audit measurements for the evaluated images, plus the verdict; ``lung_run``: a run of
    ``cxr lungs train`` whose masks define the lung field (default: the classifier's own ROI run)."""
    predictor = with_network(predictor)  # an ONNX export has no features to probe: the same run on torch
    predictor.model  # one network to probe: an ensemble is refused here, naming a member
    preds = preds or predict_split(predictor, data, split, workers, cache_dir)
    images = cached_images(preds.dataset, predictor.preprocessing, cache_dir, workers=workers)
    columns = [
        c for c in (columns if columns is not None else list(AUDIT_COLUMNS)) if c in preds.dataset.metadata_columns
    ]
    # Probes train on the run's train split, read through the same source as the evaluated
    # images when that is the training data (e.g. its manifest, which has the metadata).
    card = predictor.run.card
    own = not is_external(card, preds.dataset) and not preds.dataset.parts
    train_data = preds.dataset.location if own else card.data["path"]
    train_prep = prepare(
        train_data,
        predictor.classes,
        split_file=predictor.run.run_dir / "split.csv",
        workers=workers,
        cache_dir=cache_dir,
        allow_outside_paths=RunDir(predictor.run.run_dir).reads_outside_paths(),
    )
    train_ds = train_prep.split.subset(train_prep.dataset, "train")
    probes = []
    if columns:
        train_images = cached_images(train_ds, predictor.preprocessing, cache_dir, workers=workers)
        f_train = penultimate_features(predictor, train_images)
        probes = confound_probes(f_train, train_ds, penultimate_features(predictor, images), preds.dataset, columns)
        pixel_probes = confound_probes(
            pixel_features(train_images), train_ds, pixel_features(images), preds.dataset, columns
        )
        probes = with_pixel_baseline(probes, pixel_probes)
    masks, region = lung_fields(images, predictor, preds.dataset, lung_run)
    occlusion = occlusion_tests(predictor, images, preds.y_true, masks, region["region"])
    adults = adult_only(preds, predictor.temperature)
    return {
        "probes": probes,
        "occlusion": occlusion,
        "adult_only": adults,
        "lung_box": list(LUNG_BOX),
        "lung_region": region,
        "border_band": BORDER_BAND,
        "verdict": verdict(occlusion, probes, adults, len(predictor.classes)),
    }
