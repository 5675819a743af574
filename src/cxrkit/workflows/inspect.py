"""Inspect a prepared dataset into a folder: ``inspect.json`` (confounds, skipped files) + ``split.csv``.

Shared by ``cxr data inspect`` and the demo's first step. Imports only the data layer, so
``cxr data inspect`` loads no Lightning.
"""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json
from ..data import inspect_dataset, write_split

INSPECT_FILE = "inspect.json"
SPLIT_FILE = "split.csv"


def write_inspection(prep, out: str | Path, by: list[str] | None = None) -> dict:
    """The inspection report of ``prep`` (a :class:`~cxrkit.data.Prepared`), written with its split."""
    out = Path(out)
    report = inspect_dataset(prep.dataset, prep.infos, prep.split, by)
    out.mkdir(parents=True, exist_ok=True)
    write_split(out / SPLIT_FILE, prep.dataset, prep.split)
    atomic_write_json(out / INSPECT_FILE, report)
    return report
