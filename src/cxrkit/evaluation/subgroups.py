"""The same metrics for each value of a metadata column (e.g. population, subsource).

A model can score well overall and fail a whole subgroup; on confounded data (pediatric
viral vs adult covid) subgroup results are where shortcut learning shows.
"""

from __future__ import annotations

import numpy as np

from ..data.groups import group_value
from .summaries import summarize

MIN_IMAGES = 30  # below this a subgroup's CI is too wide to mean much
MIN_PER_CLASS = 5


def column_values(records, column: str) -> list[str]:
    """Each record's subgroup value of ``column``: ``age`` binned and ``view`` reduced to its
    projection as :func:`cxrkit.data.groups.group_value` does; any other column as written.
    ``a+b`` crosses two columns ("adult/AP"): NIH's AP normals are adults and children;
    ``label`` is the film's label (``label+view``: "normal/AP")."""
    if "+" in column:
        parts = [column_values(records, c) for c in column.split("+")]
        return ["/".join(vs) if all(vs) else "" for vs in zip(*parts)]
    if column == "label":
        return [r.label for r in records]
    raw = [(r.metadata.get(column) or "").strip() for r in records]
    if column in ("age", "view"):
        return [group_value(column, v) for v in raw]
    return raw


def missing_columns(columns: list[str], available: list[str]) -> list[str]:
    """The columns (parts of ``a+b`` crossings too) that the data does not have."""
    return [c for col in columns for c in col.split("+") if c not in available and c != "label"]


def subgroup_results(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    values: list[str],
    groups=None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """``{value: {"n_images", "class_counts", "metrics", "warning"}}`` for each column value."""
    out = {}
    values = np.asarray([v or "(missing)" for v in values])
    for value in sorted(set(values.tolist())):
        idx = np.nonzero(values == value)[0]
        sub_groups = [groups[i] for i in idx] if groups is not None else None
        s = summarize(y_true[idx], probs[idx], classes, sub_groups, n_resamples, seed)
        counts = np.bincount(y_true[idx], minlength=len(classes))
        present = {c: int(n) for c, n in zip(classes, counts) if n}
        warning = None
        if len(idx) < MIN_IMAGES:
            warning = f"only {len(idx)} images: the CI is too wide to support a conclusion"
        elif min(present.values()) < MIN_PER_CLASS:
            warning = "a class has fewer than 5 images here: its per-class metrics are not reliable"
        if len(present) == 1:
            only = next(iter(present))
            note = f"only {only} images: accuracy here is {only} sensitivity"
            warning = f"{warning}; {note}" if warning else note
        out[value] = {"n_images": int(len(idx)), "class_counts": present, "metrics": s["metrics"], "warning": warning}
    return out
