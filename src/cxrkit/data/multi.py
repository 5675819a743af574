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
  clear error: nothing is silently merged. Identical image content under two labels is caught
  after decoding (:func:`label_conflicts`) and both copies are skipped with the reason.

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
from .sources import DatasetError, load_dataset


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


def label_conflicts(dataset: CxrDataset, infos: list) -> tuple[CxrDataset, list]:
    """Drop images whose perceptual hash (all 256 bits equal) appears under two labels in two datasets.

    ``infos``: the scan's :class:`~.scan.ImageInfo` per record. Such a film has no true label in
    the union: both copies are added to ``skipped`` with the reason (so they are counted and
    listed), never trained on. Returns the kept dataset and its infos.
    """
    if not dataset.parts:
        return dataset, infos
    labels: dict[str, set[str]] = {}
    sources: dict[str, set[str]] = {}
    for r, info in zip(dataset.records, infos):
        labels.setdefault(info.phash, set()).add(r.label)
        sources.setdefault(info.phash, set()).add(r.metadata.get("dataset", ""))
    bad = {h for h, ls in labels.items() if len(ls) > 1 and len(sources[h]) > 1}
    if not bad:
        return dataset, infos
    keep = [info.phash not in bad for info in infos]
    kept = dataset.select(keep)
    kept.skipped.extend(
        Skipped(
            str(r.path),
            f"the same image is labelled {' and '.join(sorted(labels[info.phash]))} in different datasets "
            f"({r.metadata.get('dataset', '?')} says {r.label}); left out",
        )
        for r, info, k in zip(dataset.records, infos, keep)
        if not k
    )
    return kept, [info for info, k in zip(infos, keep) if k]
