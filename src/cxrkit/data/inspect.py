"""What is in a dataset, and what could mislead a model trained on it.

:func:`inspect_dataset` summarises classes, splits, image sizes and modes, patients,
duplicates and skipped files, and measures confounds: for each metadata column (such as
``population`` or ``subsource``) a class-by-value table, Cramer's V, and for each pair of
classes the balanced accuracy of telling them apart from that column alone. A column
that separates two classes almost perfectly is a shortcut a CNN can learn instead of the
disease (in ../shared/data/cxr, ``population`` separates covid from viral pneumonia).
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np

from ..errors import UsageError
from .dataset import CxrDataset
from .multi import label_conflict_count
from .scan import ImageInfo
from .splits import Split

DEFAULT_CONFOUND_COLUMNS = ("population", "subsource", "source_split", "view", "sex")
CONFOUND_WARN_ACCURACY = 0.9  # a column alone separating two classes this well is a warning
MAX_TABLE_VALUES = 60
MISSING = "(missing)"


def confound_table(dataset: CxrDataset, column: str) -> dict:
    """Class-by-value counts for ``column`` and how well it alone predicts the class."""
    values = [r.metadata.get(column) or MISSING for r in dataset.records]
    distinct = sorted(set(values))
    if len(distinct) > MAX_TABLE_VALUES:
        return {
            "column": column,
            "values": len(distinct),
            "note": f"{len(distinct)} distinct values: too many to tabulate",
        }
    counts = np.zeros((len(distinct), len(dataset.classes)), dtype=np.int64)
    v_index = {v: i for i, v in enumerate(distinct)}
    c_index = {c: i for i, c in enumerate(dataset.classes)}
    for rec, v in zip(dataset.records, values):
        counts[v_index[v], c_index[rec.label]] += 1
    pairs = []
    for a, b in combinations(range(len(dataset.classes)), 2):
        na, nb = counts[:, a].sum(), counts[:, b].sum()
        if na == 0 or nb == 0:
            continue
        # Best rule "value -> class" balanced accuracy = (1 + total variation distance) / 2.
        tv = 0.5 * np.abs(counts[:, a] / na - counts[:, b] / nb).sum()
        pairs.append(
            {
                "classes": [dataset.classes[a], dataset.classes[b]],
                "balanced_accuracy_from_column": round(float(0.5 + 0.5 * tv), 4),
            }
        )
    warnings = [
        f"'{column}' alone separates {p['classes'][0]} from {p['classes'][1]} with balanced "
        f"accuracy {p['balanced_accuracy_from_column']:.3f}: a model can learn '{column}' "
        "instead of the disease. Report results per subgroup."
        for p in pairs
        if p["balanced_accuracy_from_column"] >= CONFOUND_WARN_ACCURACY
    ]
    return {
        "column": column,
        "table": {v: dict(zip(dataset.classes, map(int, row))) for v, row in zip(distinct, counts)},
        "cramers_v": round(_cramers_v(counts), 4),
        "pairwise": pairs,
        "warnings": warnings,
    }


def _cramers_v(counts: np.ndarray) -> float:
    counts = counts[counts.sum(1) > 0][:, counts.sum(0) > 0].astype(float)
    if min(counts.shape) < 2:
        return 0.0
    n = counts.sum()
    expected = np.outer(counts.sum(1), counts.sum(0)) / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (n * (min(counts.shape) - 1))))


def _summary(xs: list[int]) -> dict:
    a = np.asarray(xs)
    return {"min": int(a.min()), "median": float(np.median(a)), "max": int(a.max())} if len(a) else {}


def inspect_dataset(
    dataset: CxrDataset, infos: list[ImageInfo], split: Split, columns: list[str] | None = None
) -> dict:
    """Everything ``cxr data inspect`` reports, as a JSON-ready dict."""
    if columns is None:
        columns = [c for c in DEFAULT_CONFOUND_COLUMNS if c in dataset.metadata_columns]
    unknown = [c for c in columns if c not in dataset.metadata_columns]
    if unknown:
        raise UsageError(
            f"no metadata column(s) {', '.join(unknown)} in {dataset.root}; "
            f"available: {', '.join(dataset.metadata_columns) or 'none'}"
        )
    patients = Counter(r.patient_id for r in dataset.records if r.patient_id)
    confounds = [confound_table(dataset, c) for c in columns]
    return {
        "dataset": {
            "root": str(dataset.root),
            "source": dataset.source,
            "classes": list(dataset.classes),
            "images": len(dataset),
            **({"datasets": dataset.parts} if dataset.parts else {}),
        },
        "images_per_class": dataset.class_counts(),
        "missing_classes": [c for c, n in dataset.class_counts().items() if n == 0],
        "excluded": dict(sorted(dataset.excluded.items())),
        "ignored_non_image_files": dataset.ignored_files,
        "skipped_count": len(dataset.skipped),
        "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
        "label_conflicts": label_conflict_count(dataset),  # of skipped: one film under two labels
        "notes": list(dataset.notes),
        "split": {"counts": split.counts(dataset), **split.stats},
        "image_sizes": {
            "width": _summary([i.width for i in infos]),
            "height": _summary([i.height for i in infos]),
            "most_common": [
                {"size": f"{w}x{h}", "images": n}
                for (w, h), n in Counter((i.width, i.height) for i in infos).most_common(5)
            ],
        },
        "image_modes": dict(Counter(i.mode for i in infos).most_common()),
        "masks": sum(1 for r in dataset.records if r.mask_path),
        "patients": {
            "with_id": len(patients),
            "images_with_id": sum(patients.values()),
            "images_without_id": len(dataset) - sum(patients.values()),
            "max_images_per_patient": max(patients.values(), default=0),
        },
        "confounds": confounds,
        "warnings": [w for c in confounds for w in c.get("warnings", [])],
    }
