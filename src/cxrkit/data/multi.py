"""Several dataset roots read as one: ``cxr train --data ../shared/data/cxr ../shared/data/nih``.

Why: one source per class teaches the source, not the disease. In the shared data almost every
COVID film is AP and the adult normals are one PA-heavy source, so a model trained on ``cxr/``
alone called 40% of NIH's AP normals COVID; adding ``nih/`` (AP and PA normals, adult
pneumonia that is not COVID) raised them to 95% (``../shared/data/nih/README.md``).

Each root is read by the same source registry (:func:`.sources.load_dataset`), then:

* patient ids are namespaced by the root's name (``nih/nih-1281``) so two datasets that both
  number patients from 1 never merge two people; images without an id stay per image;
* every record gets a ``dataset`` metadata column, and each root's own columns (``view``,
  ``age``, ``population``, ``subsource``) are kept (empty where a root lacks them);
* ``CxrDataset.parts`` records each root's path, layout, image count and fingerprint (the same
  fingerprint the root alone would have), which the model card stores;
* roots that overlap (one inside another, or one file listed by two roots) are refused with a
  clear error: nothing is silently merged. One film under two labels (the same or a re-encoded
  copy, by perceptual hash) is caught after decoding (:func:`label_conflicts`) and every copy is
  skipped with the reason.

The split is made once over the union (:mod:`.splits`), patient- and near-duplicate-aware, so a
film that two datasets share lands in one split.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from .dataset import CxrDataset, Record, Skipped
from .duplicates import DEFAULT_MAX_DISTANCE, UnionFind, near_duplicate_pairs
from .sources import DatasetError, load_dataset

# how a skipped film's reason starts when two datasets label it differently (counted by inspect and the card)
LABEL_CONFLICT = "the same film is labelled"


def label_conflict_count(dataset: CxrDataset) -> int:
    """Skipped files of ``dataset`` left out by :func:`label_conflicts`."""
    return sum(s.reason.startswith(LABEL_CONFLICT) for s in dataset.skipped)


def data_roots(data) -> list[str]:
    """``data`` (one path, or a list of paths) as a list of path strings."""
    if isinstance(data, (list, tuple)):
        return [str(d) for d in data]
    return [str(data)]


def load_data(
    data: str | Path | list[str | Path],
    classes: str | list[str] | None = None,
    *,
    allow_outside_paths: bool = False,
    min_classes: int = 2,
) -> CxrDataset:
    """Read one dataset or the union of several, as :func:`~cxrkit.data.sources.load_dataset` does.

    Args:
        data: a path, or a list of paths read as one dataset (patient ids kept apart per dataset;
            overlapping datasets are refused).
        classes: as for :func:`~cxrkit.data.sources.load_dataset`.
        allow_outside_paths: read manifest rows whose path leaves the manifest's folder.
        min_classes: as for :func:`~cxrkit.data.sources.load_dataset`.

    Returns:
        One dataset; with several roots its ``parts`` name each one and its fingerprint.
    """
    roots = data_roots(data)
    if len(roots) == 1:
        return load_dataset(roots[0], classes, allow_outside_paths=allow_outside_paths, min_classes=min_classes)
    _check_nesting([Path(r).expanduser().resolve() for r in roots])
    parts = []
    for root in roots:
        try:
            parts.append(load_dataset(root, classes, allow_outside_paths=allow_outside_paths, min_classes=min_classes))
        except DatasetError as exc:
            raise DatasetError(f"{exc} (one of {len(roots)} datasets given with --data)") from None
    return union(parts)


def _names(parts: Sequence[CxrDataset]) -> list[str]:
    """A short unique name per dataset: its folder name, made unique with its parent's name."""
    names = [p.root.name for p in parts]
    for i, p in enumerate(parts):
        if names.count(names[i]) > 1:
            names[i] = f"{p.root.parent.name}-{p.root.name}"
    for i in range(len(names)):  # still equal (same parent and name): number them
        if names.count(names[i]) > 1:
            names[i] = f"{names[i]}-{i + 1}"
    return names


def _check_nesting(roots: list[Path]) -> None:
    roots = [r.parent if r.is_file() else r for r in roots]  # a manifest CSV stands for its folder
    for i, a in enumerate(roots):
        for b in roots[i + 1 :]:
            if a == b or a.is_relative_to(b) or b.is_relative_to(a):
                raise DatasetError(
                    f"{a} and {b}: one dataset folder lies inside the other, so their images would be "
                    "read twice; give each dataset once (the outer folder, or the inner ones)"
                )


def _check_overlap(parts: Sequence[CxrDataset]) -> None:
    _check_nesting([p.root.resolve() for p in parts])
    owner: dict[Path, int] = {}
    for i, p in enumerate(parts):
        for r in p.records:
            j = owner.setdefault(r.path.resolve(), i)
            if j != i:
                raise DatasetError(
                    f"{r.path}: listed by two datasets ({parts[j].location or parts[j].root} and "
                    f"{p.location or p.root}); a file may belong to one dataset only: remove it from one manifest"
                )


def union(parts: Sequence[CxrDataset]) -> CxrDataset:
    """One dataset over ``parts`` (same class order), patient ids namespaced, ``parts`` recorded."""
    if not parts:
        raise DatasetError("no dataset given")
    classes = parts[0].classes
    for p in parts[1:]:
        if p.classes != classes:  # cannot happen with one class list; guards direct callers
            raise DatasetError(f"{p.root}: classes {p.classes} differ from {parts[0].root}'s {classes}")
    _check_overlap(parts)
    names = _names(parts)
    root = Path(os.path.commonpath([str(p.root) for p in parts]))
    records: list[Record] = []
    for name, p in zip(names, parts):
        for r in p.records:
            pid = f"{name}/{r.patient_id}" if r.patient_id else None
            records.append(replace(r, patient_id=pid, metadata={**r.metadata, "dataset": name}))
    records.sort(key=lambda r: str(r.path))
    excluded: Counter = Counter()
    for p in parts:
        excluded.update(p.excluded)
    return CxrDataset(
        root,
        "+".join(dict.fromkeys(p.source for p in parts)),
        classes,
        records,
        [s for p in parts for s in p.skipped],
        excluded,
        sum(p.ignored_files for p in parts),
        None,
        [f"{name}: {n}" for name, p in zip(names, parts) for n in p.notes],
        parts=[
            {
                "name": name,
                "path": str(p.root),
                "location": str(p.location or p.root),
                "source": p.source,
                "images": len(p),
                "class_counts": p.class_counts(),
                "fingerprint": p.fingerprint(),
            }
            for name, p in zip(names, parts)
        ],
    )


def label_conflicts(
    dataset: CxrDataset, infos: list, max_distance: int = DEFAULT_MAX_DISTANCE
) -> tuple[CxrDataset, list]:
    """Drop films that two datasets hold under different labels, re-encoded copies included.

    ``infos``: the scan's :class:`~.scan.ImageInfo` per record. Images whose perceptual hashes
    are within ``max_distance`` bits (the split's near-duplicate rule; at least 0: equal hashes)
    form one film; a film found in two datasets under two labels has no true label in the
    union: every copy is added to ``skipped`` with the reason and its partner (so it is counted
    and listed), never trained on. Returns the kept dataset and its infos.

    Why near, not equal: one film reaches two public datasets mostly as a re-encoded copy, and
    requiring equal hashes caught 27-33 of 40 JPEG-90 copies. Measured on 400 real films of
    ../shared/data/cxr re-encoded in memory (JPEG 70-95, 0.5x-2x, 224 px, resize + JPEG;
    bench/reencode_hashes.py, docs/results/reencode_hashes.md), a copy lands at most 8 bits
    from its original (99th percentile 2-8 by re-encoding; 20-92% keep the exact hash), while
    the closest two distinct films of cxr + nih (6,216 films, 19.3M pairs) are 40 bits apart:
    the default 36 finds every copy and matched no pair of distinct films (0 of 19.3M).
    """
    if not dataset.parts:
        return dataset, infos
    records = dataset.records
    pairs = near_duplicate_pairs([i.phash for i in infos], max(max_distance, 0))
    pairs = [(a, b) for a, b in pairs if records[a].metadata.get("dataset") != records[b].metadata.get("dataset")]
    if not pairs:
        return dataset, infos
    film = UnionFind(len(records))
    for a, b in pairs:
        film.union(a, b)
    members: dict[int, list[int]] = {}
    for i in sorted({i for pair in pairs for i in pair}):
        members.setdefault(film.find(i), []).append(i)
    reasons: dict[int, str] = {}
    for group in members.values():
        labels = sorted({records[i].label for i in group})
        if len(labels) < 2:
            continue
        for i in group:
            r = records[i]
            other = next(records[j] for j in group if records[j].label != r.label)
            reasons[i] = (
                f"{LABEL_CONFLICT} {' and '.join(labels)} in different datasets "
                f"({r.metadata.get('dataset', '?')} says {r.label}, {other.metadata.get('dataset', '?')} says "
                f"{other.label}: {other.path}); every copy left out"
            )
    if not reasons:
        return dataset, infos
    keep = [i not in reasons for i in range(len(records))]
    kept = dataset.select(keep)
    kept.skipped.extend(Skipped(str(records[i].path), reasons[i]) for i in sorted(reasons))
    return kept, [info for info, k in zip(infos, keep) if k]
