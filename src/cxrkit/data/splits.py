"""Patient- and duplicate-aware, stratified, seeded train/val/test splits.

Images are first joined into groups: all images of one patient, and images whose
perceptual hashes say they are the same picture (see :mod:`.duplicates`). Whole groups
are then dealt to splits so that every class reaches its target share in every split.
The same dataset, seed and fractions always give the same split, whatever order the
files were listed in. Splits are saved to CSV so every later step uses exactly them.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_write_text
from ..errors import CxrkitError, UsageError
from .dataset import CxrDataset
from .duplicates import DEFAULT_MAX_DISTANCE, near_duplicate_pairs

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
SPLIT_COLUMNS = ("file", "label", "split", "group", "patient_id")


class SplitError(CxrkitError, ValueError):
    """A split file that does not fit the dataset it is applied to."""


@dataclass
class Split:
    """``assignment[i]`` is the split of ``dataset.records[i]``; ``group[i]`` its group id."""

    assignment: list[str]
    group: list[int]
    stats: dict = field(default_factory=dict)

    def counts(self, dataset: CxrDataset) -> dict[str, dict[str, int]]:
        """Images per split and class."""
        out = {s: {c: 0 for c in dataset.classes} for s in SPLITS}
        for rec, s in zip(dataset.records, self.assignment):
            out[s][rec.label] += 1
        return out

    def subset(self, dataset: CxrDataset, name: str) -> CxrDataset:
        if name not in SPLITS:
            raise UsageError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return dataset.select([s == name for s in self.assignment])


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def make_split(dataset: CxrDataset, hashes: list[str] | None = None,
               fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0,
               max_distance: int = DEFAULT_MAX_DISTANCE) -> Split:
    """Split ``dataset`` into train/val/test by whole patient/duplicate groups.

    ``hashes`` are the perceptual hashes of ``dataset.records`` (from :func:`scan_dataset`);
    without them only patient ids group images.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise UsageError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    n = len(dataset)
    if hashes is not None and len(hashes) != n:
        raise UsageError(f"{len(hashes)} hashes for {n} records")
    # Work in a canonical order so the split does not depend on listing order.
    order = sorted(range(n), key=lambda i: dataset.relpath(dataset.records[i]))
    uf = _UnionFind(n)
    first_of_patient: dict[str, int] = {}
    for i in order:
        pid = dataset.records[i].patient_id
        if pid:
            uf.union(first_of_patient.setdefault(pid, i), i)
    dup_pairs = near_duplicate_pairs(hashes, max_distance) if hashes is not None else []
    merges = sum(uf.union(a, b) for a, b in dup_pairs)
    cross_label = [(a, b) for a, b in dup_pairs
                   if dataset.records[a].label != dataset.records[b].label]

    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(uf.find(i), []).append(i)
    class_index = {c: k for k, c in enumerate(dataset.classes)}
    members = list(groups.values())
    rng = np.random.default_rng(seed)
    rng.shuffle(members)
    members.sort(key=len, reverse=True)  # stable: big groups first, ties in seeded order

    totals = np.bincount([class_index[r.label] for r in dataset.records],
                         minlength=len(dataset.classes)).astype(float)
    target = np.outer(fractions, totals) + 1e-9
    filled = np.zeros_like(target)
    assignment = [""] * n
    group_of = [0] * n
    for gid, idx in enumerate(members):
        counts = np.bincount([class_index[dataset.records[i].label] for i in idx],
                             minlength=len(dataset.classes))
        fill = (filled * counts).sum(1) / target.dot(counts) if counts.any() else filled.sum(1)
        fill[np.asarray(fractions) == 0] = np.inf
        s = int(np.lexsort((-np.asarray(fractions), fill))[0])
        filled[s] += counts
        for i in idx:
            assignment[i] = SPLITS[s]
            group_of[i] = gid
    stats = {
        "seed": seed,
        "fractions": list(fractions),
        "groups": len(members),
        "patients": len(first_of_patient),
        "images_with_patient_id": sum(1 for r in dataset.records if r.patient_id),
        "near_duplicate_pairs": len(dup_pairs),
        "near_duplicate_max_distance": max_distance,
        "groups_merged_by_duplicates": merges,
        "near_duplicate_pairs_with_different_labels": [
            [dataset.relpath(dataset.records[a]), dataset.relpath(dataset.records[b])]
            for a, b in cross_label],
    }
    return Split(assignment, group_of, stats)


def split_to_csv(dataset: CxrDataset, split: Split) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SPLIT_COLUMNS)
    rows = sorted(
        (dataset.relpath(r), r.label, s, g, r.patient_id or "")
        for r, s, g in zip(dataset.records, split.assignment, split.group))
    w.writerows(rows)
    return buf.getvalue()


def write_split(path: str | Path, dataset: CxrDataset, split: Split) -> Path:
    """Write the split CSV atomically (sorted rows, so equal splits give equal files)."""
    return atomic_write_text(path, split_to_csv(dataset, split))


def split_fingerprint(csv_text: str) -> str:
    """Short sha256 of a split file's content: the identity of a split in model cards."""
    return hashlib.sha256(csv_text.encode("utf-8")).hexdigest()[:16]


def read_split(path: str | Path, dataset: CxrDataset) -> Split:
    """Apply a saved split to ``dataset``; every record must be listed with its label."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SplitError(f"{path}: cannot read split file ({exc.strerror or exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing_cols = set(SPLIT_COLUMNS[:3]) - set(reader.fieldnames or [])
    if missing_cols:
        raise SplitError(f"{path}: not a split file, missing column(s) {', '.join(sorted(missing_cols))}")
    listed: dict[str, tuple[str, str, int]] = {}
    for line_no, row in enumerate(reader, start=2):
        if row["split"] not in SPLITS:
            raise SplitError(f"{path} line {line_no}: split {row['split']!r} is not one of {SPLITS}")
        listed[row["file"]] = (row["label"], row["split"], int(row.get("group") or line_no))
    assignment, group, unlisted, relabelled = [], [], [], []
    for rec in dataset.records:
        key = dataset.relpath(rec)
        if key not in listed:
            unlisted.append(key)
            continue
        label, s, g = listed[key]
        if label != rec.label:
            relabelled.append(f"{key} ({label} in split, {rec.label} in data)")
        assignment.append(s)
        group.append(g)
    if unlisted or relabelled:
        problems = ([f"{len(unlisted)} image(s) not in the split, e.g. {unlisted[:3]}"] if unlisted else []) + \
                   ([f"{len(relabelled)} label mismatch(es), e.g. {relabelled[:3]}"] if relabelled else [])
        raise SplitError(f"{path} does not match the dataset at {dataset.root}: " + "; ".join(problems)
                         + ". Make a new split with `cxr data split`.")
    return Split(assignment, group, {"file": str(path), "fingerprint": split_fingerprint(text),
                                     "not_in_dataset": len(listed) - len(assignment),
                                     "counts": dict(Counter(assignment))})
