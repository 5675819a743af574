"""Class names: one canonical spelling per finding, whatever the dataset calls it.

Datasets spell the same class many ways (Kaggle v1 ``COVID-19``, v4 ``COVID``, Kermany
``NORMAL``...). Every label passes through :func:`normalise_label` so that models, splits
and reports agree on names. Unknown names are kept, lower-cased with ``_`` for spaces,
so other class sets work without touching this table.
"""

from __future__ import annotations

import re

from ..errors import UsageError

DEFAULT_CLASSES = ("covid", "viral_pneumonia", "normal")

# alias (compared lower-case, with spaces/dashes/underscores collapsed) -> canonical name
LABEL_ALIASES: dict[str, str] = {
    "covid": "covid",
    "covid19": "covid",
    "covid_19": "covid",
    "sars_cov_2": "covid",
    "normal": "normal",
    "no_finding": "normal",
    "healthy": "normal",
    "viral_pneumonia": "viral_pneumonia",
    "viral": "viral_pneumonia",
    "virus": "viral_pneumonia",
    "pneumonia_viral": "viral_pneumonia",
    "bacterial_pneumonia": "bacterial_pneumonia",
    "bacterial": "bacterial_pneumonia",
    "bacteria": "bacterial_pneumonia",
    "pneumonia_bacterial": "bacterial_pneumonia",
    "lung_opacity": "lung_opacity",
    "opacity": "lung_opacity",
    "pneumonia": "pneumonia",
    "tuberculosis": "tuberculosis",
    "tb": "tuberculosis",
}


def _key(name: str) -> str:
    return re.sub(r"[\s\-_]+", "_", name.strip().lower()).strip("_")


def normalise_label(name: str) -> str:
    """Return the canonical class name for ``name`` (``"Viral Pneumonia"`` -> ``"viral_pneumonia"``)."""
    key = _key(name)
    if not key:
        raise UsageError("empty class name")
    return LABEL_ALIASES.get(key, LABEL_ALIASES.get(key.replace("_", ""), key))


def parse_classes(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Parse ``"covid,viral_pneumonia,normal"`` (or a list) into ordered canonical names."""
    if spec is None:
        return DEFAULT_CLASSES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    classes = tuple(normalise_label(c) for c in items if c.strip())
    if len(classes) < 2:
        raise UsageError(f"need at least two classes, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise UsageError(f"a class is named twice in {classes!r} (after normalising aliases)")
    return classes
