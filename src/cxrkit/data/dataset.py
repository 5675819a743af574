"""The one dataset abstraction every source produces.

A :class:`CxrDataset` is a list of :class:`Record` (image path, canonical label, optional
patient id, optional lung mask, metadata columns) plus what was left out and why, so no
image disappears without a trace: ``skipped`` holds unreadable or missing files with the
reason, ``excluded`` counts images of classes outside the selected set, ``notes`` says how
the source was read where that may matter (a manifest decoded as Latin-1).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import text_bytes


@dataclass(frozen=True)
class Record:
    path: Path
    label: str
    patient_id: str | None = None
    mask_path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class CxrDataset:
    """Records of one dataset restricted to ``classes`` (in that order).

    ``root`` is the folder that relative paths (in split files, reports) are taken from;
    ``source`` says how it was read: ``folders``, ``manifest`` or ``ieee8023``.
    """

    root: Path
    source: str
    classes: tuple[str, ...]
    records: list[Record]
    skipped: list[Skipped] = field(default_factory=list)
    excluded: Counter = field(default_factory=Counter)
    ignored_files: int = 0
    location: Path | None = None  # what was read: the CSV for manifests, else the folder
    notes: list[str] = field(default_factory=list)
    # several roots read as one (cxrkit.data.multi): per root {name, path, source, images, fingerprint}
    parts: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    @property
    def labels(self) -> np.ndarray:
        """Integer class index of every record (position in ``classes``)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[r.label] for r in self.records], dtype=np.int64)

    @property
    def patient_ids(self) -> list[str | None]:
        return [r.patient_id for r in self.records]

    @property
    def metadata_columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for r in self.records:
            cols.update(dict.fromkeys(r.metadata))
        return list(cols)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(r.label for r in self.records)
        return {c: counts.get(c, 0) for c in self.classes}

    def relpath(self, record: Record) -> str:
        """Path of ``record`` relative to the dataset root (POSIX), absolute if outside it."""
        try:
            return record.path.relative_to(self.root).as_posix()
        except ValueError:
            return record.path.as_posix()

    def select(self, keep: list[bool] | np.ndarray) -> "CxrDataset":
        """A dataset of the records where ``keep`` is true (same classes and bookkeeping)."""
        records = [r for r, k in zip(self.records, keep) if k]
        return CxrDataset(
            self.root,
            self.source,
            self.classes,
            records,
            list(self.skipped),
            Counter(self.excluded),
            self.ignored_files,
            self.location,
            list(self.notes),
            [dict(p) for p in self.parts],
        )

    def fingerprint(self) -> str:
        """sha256 (16 hex) over (relative path, label, file size) of every record: cheap and
        order-independent. A file that vanished since it was listed counts with size -1 instead
        of raising, so a run's card can still be written (and differs from the intact data's).
        The value the run card has always recorded as the data fingerprint."""
        h = hashlib.sha256()
        for line in sorted(f"{self.relpath(r)}\0{r.label}\0{_size(r.path)}" for r in self.records):
            h.update(text_bytes(line) + b"\n")
        return h.hexdigest()[:16]


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1
