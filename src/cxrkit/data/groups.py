"""Acquisition groups of each image (who took the film, which population) as integer codes.

De-confounding (an adversarial head, group-balanced sampling) needs, per image, the group it
belongs to beyond its class. The manifest's columns spell groups with detail that is not a
group of its own: ``population`` is "adult", "adult (assumed)" or "adult (RSNA via RadDB,
assumed)" -> ``adult``; ``subsource`` is "ieee8023:COVID-19" or "RadDB-Normal" -> the source
(``ieee8023``, ``RadDB``), since the part after it is the label, which the class already says;
``view`` "AP Supine" -> ``AP``; ``age`` in years -> a bin (:data:`AGE_BINS`).
Unknown or empty values get code -1 (ignored by the losses, sampled like their class).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import UsageError
from .dataset import CxrDataset

GROUP_COLUMNS = ("population", "subsource")
UNKNOWN = -1


def group_value(column: str, value: str) -> str:
    """The group that a metadata value stands for ("" when unknown)."""
    value = (value or "").strip()
    if column == "population":
        value = value.split(" ")[0].split("(")[0].lower()
        return "" if value in ("", "unknown") else value
    if column == "subsource":
        return re.split(r"[:\-]", value, maxsplit=1)[0]
    if column == "view":  # "AP Supine", "AP erect" -> AP: the projection is the shortcut, not the posture
        return value.split()[0].upper() if value else ""
    if column == "age":
        return _age_bin(value)
    return value


# Age in years is binned: one group per year would hold a few films each. <18 is the pediatric
# cut of the shared data's manifests; the adult bins split NIH's adults roughly in thirds.
AGE_BINS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 200, "60+"))


def _age_bin(value: str) -> str:
    try:
        years = float(value)
    except ValueError:
        return ""
    return next((name for lo, hi, name in AGE_BINS if lo <= years < hi), "")


def group_codes(dataset: CxrDataset, column: str, min_count: int = 10) -> tuple[np.ndarray, list[str]]:
    """Per record the index of its group in the returned value list, or -1.

    Groups with fewer than ``min_count`` images are pooled as ``other`` (a head cannot learn
    a group it saw five times, and their gradients would be noise).
    """
    if column not in dataset.metadata_columns:
        raise UsageError(
            f"{column}: no such metadata column in {dataset.location or dataset.root} "
            f"(columns: {', '.join(dataset.metadata_columns) or 'none'}); de-confounding needs a manifest with it"
        )
    raw = [group_value(column, r.metadata.get(column, "")) for r in dataset.records]
    counts: dict[str, int] = {}
    for v in raw:
        if v:
            counts[v] = counts.get(v, 0) + 1
    pooled = ["other" if v and counts[v] < min_count else v for v in raw]
    values = sorted({v for v in pooled if v})
    index = {v: i for i, v in enumerate(values)}
    return np.array([index.get(v, UNKNOWN) for v in pooled], np.int64), values


def balanced_weights(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sampling weights that draw every class equally often and, within a class, every group.

    Weight of image i = 1 / (groups in its class x images of its (class, group) cell); unknown
    groups count as one group of their own.
    """
    weights = np.zeros(len(labels), np.float64)
    for c in np.unique(labels):
        in_class = labels == c
        cells = np.unique(groups[in_class])
        for g in cells:
            cell = in_class & (groups == g)
            weights[cell] = 1.0 / (len(cells) * cell.sum())
    return weights


def joint_group_codes(dataset: CxrDataset, columns: list[str] | tuple[str, ...]) -> np.ndarray:
    """Per record one code for the combination of its ``columns`` groups (e.g. population x view),
    for group-balanced sampling; a record unknown in every column gets -1. Columns the data lacks
    are named in a UsageError (:func:`group_codes`)."""
    per_column = [group_codes(dataset, c)[0] for c in columns]
    if not per_column:
        return np.full(len(dataset), UNKNOWN, np.int64)
    stacked = np.stack(per_column, 1)
    _, codes = np.unique(stacked, axis=0, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    codes[(stacked == UNKNOWN).all(1)] = UNKNOWN
    return codes
