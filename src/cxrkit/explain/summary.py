"""Dataset-level explanation: where does the model look, class by class, over a whole split?

For the predicted class of every image of a split (maps on the common S x S model canvas):

* the mean map per true class and per predicted class, over the mean image of that group;
* the most confident correct and the most confident wrong predictions of each class
  (wrong = predicted that class, truly another), with their overlays;
* the share of map energy inside the lung field and inside the border band (text, markers,
  collimation), per true class: each image's map sum in the region over its total, averaged
  over images. The lung field is each image's predicted lung mask when a lung run is given
  (``--lung-run``, or the classifier's own with ``roi: lungs``; :mod:`cxrkit.lungs.locate`),
  else the dataset's lung masks when every image has one, else the documented fixed central
  box of cxrkit.lungs.locate (LUNG_BOX); ``lung_region`` names which. Pixels of the border
  band count as border only, so the two shares of an image add up to at most 1.

:func:`write_summary` writes the PNGs and ``summary.json``, whose ``images`` and
``lung_vs_border`` entries are what the evaluation report embeds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_write_json
from .._meta import RESEARCH_NOTICE
from .._numeric import softmax
from ..data.cache import cached_images
from ..data.regions import border_mask
from ..inference.splits import is_external, predict_split
from ..lungs.locate import lung_fields
from .cams import Explainer
from .overlay import annotate, draw_overlay, panel_grid, save_png

__all__ = ["CASES_PER_CLASS", "SUMMARY_FORMAT", "Case", "SplitExplanations", "explain_split", "write_summary"]

SUMMARY_FORMAT = "cxrkit-explain-summary/1"
CASES_PER_CLASS = 4
CHUNK = 256  # images explained per call: bounds memory on large splits
PANEL_INCHES = 2.6


@dataclass
class Case:
    """One image of the case grids, with its map for the predicted class."""

    path: str
    true_class: str
    predicted_class: str
    probability: float  # calibrated probability of the predicted class
    image: np.ndarray = field(repr=False)  # (S, S) uint8 model input
    cam: np.ndarray = field(repr=False)  # (S, S) in [0, 1]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "true": self.true_class,
            "predicted": self.predicted_class,
            "probability": round(self.probability, 4),
        }


@dataclass
class SplitExplanations:
    """Everything :func:`write_summary` draws and records, for one split."""

    run: str
    classes: list[str]
    method: str
    target_layer: str
    data: dict  # path, split, n_images
    mean_cam: dict[str, np.ndarray]  # "true"/"predicted" -> (C, S, S); NaN-free, zeros for empty groups
    mean_image: dict[str, np.ndarray]  # same keys, (C, S, S) in [0, 1]
    counts: dict[str, np.ndarray]  # same keys, (C,) images per group
    cases: dict[str, dict[str, list[Case]]]  # class -> "correct"/"wrong" -> most confident first
    lung_vs_border: dict[str, dict[str, float]]  # true class -> {"lung": share, "border": share}
    lung_region: str
    empty_maps: int  # images whose map is zero everywhere (left out of the shares)
    images: np.ndarray = field(repr=False)  # the split's model inputs (N, S, S) uint8, memory-mapped


def explain_split(
    explainer: Explainer,
    data=None,
    split: str | None = None,
    workers: int = 2,
    cache_dir=None,
    cases: int = CASES_PER_CLASS,
    progress: Callable[[int, int], None] | None = None,
    lung_run=None,
    preds=None,
) -> SplitExplanations:
    """Explain every image of ``split`` of ``data`` (defaults as in ``cxr evaluate``); ``lung_run``
    as in :func:`cxrkit.evaluation.audit.audit_run`. ``preds``: that split's predictions when the
    caller has them (``evaluate_and_report(explain=True)``, which ``cxr demo`` runs, predicted it already)."""
    predictor = explainer.predictor
    predictor.model  # CAMs need one model input: an ensemble is refused here, naming a member
    if preds is None:
        preds = predict_split(predictor, data, split, workers, cache_dir)
    images = cached_images(preds.dataset, predictor.preprocessing, cache_dir, workers=workers)
    n, size, n_classes = len(images), predictor.preprocessing.input_size, len(predictor.classes)
    y_true = preds.y_true
    probs = softmax(preds.logits, predictor.temperature)
    y_pred = probs.argmax(1)
    picked = _most_confident(y_true, probs, cases)
    wanted = {i for by_kind in picked.values() for idx in by_kind.values() for i in idx}

    masks, region = lung_fields(images, predictor, preds.dataset, lung_run)
    border = border_mask(size)
    sums = {"true": np.zeros((n_classes, size, size)), "predicted": np.zeros((n_classes, size, size))}
    lung_share, border_share = np.full(n, np.nan), np.full(n, np.nan)
    kept_maps: dict[int, np.ndarray] = {}
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        report = (lambda done, _, start=start: progress(start + done, n)) if progress else None
        cams = explainer.explain(images[start:stop], y_pred[start:stop], report).maps[:, 0]
        np.add.at(sums["true"], y_true[start:stop], cams)
        np.add.at(sums["predicted"], y_pred[start:stop], cams)
        lung = masks[start:stop] & ~border
        energy = cams.sum(axis=(1, 2))
        nonzero = energy > 0
        lung_share[start:stop][nonzero] = (cams * lung).sum(axis=(1, 2))[nonzero] / energy[nonzero]
        border_share[start:stop][nonzero] = (cams * border).sum(axis=(1, 2))[nonzero] / energy[nonzero]
        kept_maps.update({i: cams[i - start] for i in wanted if start <= i < stop})

    groups = {"true": y_true, "predicted": y_pred}
    counts = {k: np.bincount(g, minlength=n_classes) for k, g in groups.items()}
    mean_image = {k: _group_means(images, g, n_classes) for k, g in groups.items()}
    mean_cam = {k: sums[k] / np.maximum(counts[k], 1)[:, None, None] for k in groups}
    shares = {}
    for k, name in enumerate(predictor.classes):
        in_class = (y_true == k) & ~np.isnan(lung_share)
        if in_class.any():
            shares[name] = {"lung": float(lung_share[in_class].mean()), "border": float(border_share[in_class].mean())}

    def case(i: int) -> Case:
        return Case(
            preds.dataset.relpath(preds.dataset.records[i]),
            predictor.classes[y_true[i]],
            predictor.classes[y_pred[i]],
            float(probs[i, y_pred[i]]),
            np.array(images[i]),
            kept_maps[i],
        )

    split = split or ("all" if is_external(predictor.run.card, preds.dataset) else "test")
    return SplitExplanations(
        run=str(predictor.run.run_dir),
        classes=list(predictor.classes),
        method=explainer.method,
        target_layer=explainer.layer_name,
        data={"path": str(preds.dataset.root), "split": split, "n_images": n},
        mean_cam=mean_cam,
        mean_image=mean_image,
        counts=counts,
        cases={
            predictor.classes[k]: {kind: [case(i) for i in idx] for kind, idx in by_kind.items()}
            for k, by_kind in picked.items()
        },
        lung_vs_border=shares,
        lung_region=region["region"],
        empty_maps=int(np.isnan(lung_share).sum()),
        images=images,
    )


def _most_confident(y_true: np.ndarray, probs: np.ndarray, k: int) -> dict[int, dict[str, np.ndarray]]:
    """Per predicted class: the ``k`` most confident correct and wrong images, best first."""
    y_pred, top = probs.argmax(1), probs.max(1)
    out = {}
    for c in range(probs.shape[1]):
        out[c] = {}
        for kind, hit in (("correct", y_true == c), ("wrong", y_true != c)):
            idx = np.flatnonzero((y_pred == c) & hit)
            out[c][kind] = idx[np.argsort(-top[idx], kind="stable")][:k]
    return out


def _group_means(images: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.zeros((n_groups, *images.shape[1:]))
    for start in range(0, len(images), CHUNK):
        np.add.at(sums, groups[start : start + CHUNK], images[start : start + CHUNK] / 255.0)
    return sums / np.maximum(np.bincount(groups, minlength=n_groups), 1)[:, None, None]


def write_summary(out_dir: str | Path, result: SplitExplanations, faithfulness: dict | None = None) -> dict:
    """Write the PNGs and ``summary.json`` into ``out_dir``; returns the JSON dict.

    Image paths in the JSON are relative to ``out_dir``.
    """
    out_dir = Path(out_dir)
    caption = (
        f"{result.method} on layer {result.target_layer}, map of the predicted class; "
        f"{result.data['split']} split of {result.data['path']}"
    )
    images = {"mean_cam": save_png(out_dir / "mean_cam.png", _mean_figure(result, caption)).name}
    for name, by_kind in result.cases.items():
        png = save_png(out_dir / f"cases_{_safe(name)}.png", _cases_figure(name, by_kind, caption))
        images[f"cases_{name}"] = png.name
    summary = {
        "format": SUMMARY_FORMAT,
        "notice": RESEARCH_NOTICE,
        "run": result.run,
        "method": result.method,
        "target_layer": result.target_layer,
        "explained_class": "predicted",
        "data": result.data,
        "images": images,
        "lung_vs_border": result.lung_vs_border,
        "lung_region": result.lung_region,
        "border_band": "outer 10% of each side (cxrkit.evaluation.audit.BORDER_BAND)",
        "empty_maps": result.empty_maps,
        "cases": {
            name: {kind: [c.to_dict() for c in cases] for kind, cases in by_kind.items()}
            for name, by_kind in result.cases.items()
        },
    }
    if faithfulness is not None:
        summary["faithfulness"] = faithfulness
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _mean_figure(result: SplitExplanations, caption: str):
    fig, axes = panel_grid(2, len(result.classes), PANEL_INCHES, PANEL_INCHES)
    heat = None
    for row, group in enumerate(("true", "predicted")):
        for k, name in enumerate(result.classes):
            ax, count = axes[row, k], int(result.counts[group][k])
            if count == 0:
                _blank(ax, f"{group}: {name}\nno images")
                continue
            heat = draw_overlay(
                ax, result.mean_image[group][k], result.mean_cam[group][k], f"{group}: {name} (n = {count})"
            )
    annotate(fig, axes, heat, "mean map per true class (top) and per predicted class (bottom)", caption)
    return fig


def _cases_figure(name: str, by_kind: dict[str, list[Case]], caption: str):
    cols = max(1, *(len(c) for c in by_kind.values()))
    fig, axes = panel_grid(2, cols, PANEL_INCHES, PANEL_INCHES)
    heat = None
    for row, kind in enumerate(("correct", "wrong")):
        cases = by_kind[kind]
        for col in range(cols):
            ax = axes[row, col]
            if col >= len(cases):
                _blank(ax, f"{kind}: none" if col == 0 else "")
                continue
            c = cases[col]
            heat = draw_overlay(ax, c.image / 255.0, c.cam, f"{kind}, p = {c.probability:.2f}\ntrue: {c.true_class}")
    annotate(fig, axes, heat, f"predicted {name}: most confident correct (top) and wrong (bottom)", caption)
    return fig


def _blank(ax, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color="dimgray", transform=ax.transAxes)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)
