"""Read datasets from the layouts people actually have.

* class folders, including both Kaggle "COVID-19 Radiography Database" layouts
  (v1: ``COVID-19/``, ``NORMAL/``, ``Viral Pneumonia/`` flat; v4+: ``COVID/images`` with
  ``COVID/masks``), optional ``train/val/test`` folders above the classes;
* a CSV manifest ``file,label[,patient_id,...]`` with paths relative to the CSV, every
  extra column kept as metadata;
* the ieee8023 covid-chestxray-dataset ``metadata.csv`` (finding -> class, frontal X-rays only).

:func:`load_dataset` picks the reader: a folder with ``manifest.csv`` is read through it,
a folder with an ieee8023 ``metadata.csv`` through that, other folders as class folders.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path

from ..errors import CxrkitError
from .classes import normalise_label, parse_classes
from .dataset import CxrDataset, Record, Skipped
from .images import is_dicom, is_image_file

SPLIT_DIR_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}
MASK_DIR_NAMES = ("masks", "mask")
IEEE_COLUMNS = {"patientid", "finding", "filename"}
IEEE_FRONTAL_VIEWS = {"PA", "AP", "AP SUPINE", "AP ERECT", "AP SEMI ERECT"}
# Kermany pediatric files are named person<N>_virus_<k>.jpeg: N identifies the child.
KERMANY_PERSON = re.compile(r"^person(\d+)_", re.IGNORECASE)


class DatasetError(CxrkitError, ValueError):
    """The dataset as a whole cannot be read (wrong layout, bad manifest header, ...)."""


def load_dataset(path: str | Path, classes=None) -> CxrDataset:
    """Read ``path`` (a folder or a CSV) keeping ``classes`` in that order.

    ``classes`` is a list, a comma-separated string, ``None`` for the default
    (covid, viral_pneumonia, normal) or ``"all"`` for every class found, sorted.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path}: expected a folder of class folders or a CSV manifest")
        return _read_csv(path, classes)
    for name in ("manifest.csv", "metadata.csv"):
        if (path / name).is_file():
            return _read_csv(path / name, classes)
    return from_folders(path, classes)


def _read_csv(path: Path, classes) -> CxrDataset:
    header = set(_read_header(path))
    if IEEE_COLUMNS <= header:
        return from_ieee8023(path, classes)
    return from_manifest(path, classes)


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [h.strip() for h in next(csv.reader(fh), [])]


def _resolve_classes(classes, found: Counter) -> tuple[str, ...]:
    if isinstance(classes, str) and classes.strip().lower() == "all":
        if len(found) < 2:
            raise DatasetError(f"need at least two classes, found {sorted(found)}")
        return tuple(sorted(found))
    return parse_classes(classes)


def _finish(root: Path, source: str, classes, rows: list[Record], skipped, ignored=0, location=None,
            other_excluded: Counter | None = None) -> CxrDataset:
    found = Counter(r.label for r in rows)
    selected = _resolve_classes(classes, found)
    if not any(found.get(c) for c in selected):
        raise DatasetError(
            f"{root}: none of the classes {', '.join(selected)} were found; the data has "
            f"{', '.join(f'{c} ({n})' for c, n in sorted(found.items())) or 'no images'}. "
            "Choose classes with --classes (e.g. --classes all)."
            + (f" {len(skipped)} listed file(s) were skipped, e.g. {skipped[0].path}: "
               f"{skipped[0].reason}." if skipped else "")
        )
    keep = set(selected)
    excluded = Counter(other_excluded or {})
    excluded.update(r.label for r in rows if r.label not in keep)
    records = sorted((r for r in rows if r.label in keep), key=lambda r: str(r.path))
    return CxrDataset(root, source, selected, records, skipped, excluded, ignored, location or root)


# ----------------------------------------------------------------------------- folders
def from_folders(root: str | Path, classes=None) -> CxrDataset:
    """Class-folder layout: ``root/<class>/**/image``; see the module docstring for variants."""
    root = Path(root).resolve()
    base = root
    while True:  # a zip often unpacks to one wrapper folder: descend through it
        subdirs = _subdirs(base)
        if (len(subdirs) == 1 and subdirs[0].name.lower() not in SPLIT_DIR_NAMES
                and not any(is_image_file(p) for p in base.iterdir() if p.is_file())):
            base = subdirs[0]
        else:
            break
    split_dirs = [d for d in _subdirs(base) if d.name.lower() in SPLIT_DIR_NAMES]
    parents = [(d, d.name.lower()) for d in split_dirs] if split_dirs else [(base, None)]
    rows: list[Record] = []
    ignored = 0
    for parent, source_split in parents:
        for class_dir in _subdirs(parent):
            label = normalise_label(class_dir.name)
            found, n_ignored = _class_images(class_dir)
            ignored += n_ignored
            for image, mask in found:
                meta = {"source_split": source_split} if source_split else {}
                rows.append(Record(image, label, _patient_from_name(image.name), mask, meta))
    if not rows:
        raise DatasetError(
            f"{root}: no images found. Expected one folder per class (e.g. covid/, normal/, "
            "viral_pneumonia/), a manifest.csv, or an ieee8023 metadata.csv."
        )
    return _finish(root, "folders", classes, rows, [], ignored)


def _subdirs(path: Path) -> list[Path]:
    # __MACOSX: resource forks that zips made on a Mac carry beside the real folders
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name != "__MACOSX")


def _class_images(class_dir: Path) -> tuple[list[tuple[Path, Path | None]], int]:
    """Images of one class folder with their masks (Kaggle v4 ``images/`` + ``masks/``)."""
    image_dir = class_dir / "images"
    masks: dict[str, Path] = {}
    if image_dir.is_dir():
        for name in MASK_DIR_NAMES:
            if (class_dir / name).is_dir():
                masks.update({p.stem: p for p in (class_dir / name).rglob("*") if is_image_file(p)})
        search = image_dir
    else:
        search = class_dir
    images, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(search):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not (search == class_dir and d in MASK_DIR_NAMES))
        for fname in sorted(filenames):
            p = Path(dirpath) / fname
            if fname.startswith("."):
                continue  # .DS_Store and friends are not data
            if is_image_file(p) or (not p.suffix and _sniff_dicom(p)):
                images.append((p, masks.get(p.stem)))
            else:
                ignored += 1
    return images, ignored


def _sniff_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return is_dicom(fh.read(132))
    except OSError:
        return False


def _patient_from_name(name: str) -> str | None:
    m = KERMANY_PERSON.match(name)
    return f"kermany-{m.group(1)}" if m else None


# ----------------------------------------------------------------------------- manifest
def from_manifest(csv_path: str | Path, classes=None) -> CxrDataset:
    """CSV with ``file,label[,patient_id][,mask][,...]``; paths relative to the CSV's folder."""
    csv_path = Path(csv_path).resolve()
    root = csv_path.parent
    header = _read_header(csv_path)
    missing = {"file", "label"} - set(header)
    if missing:
        raise DatasetError(
            f"{csv_path}: manifest lacks column(s) {', '.join(sorted(missing))}; found "
            f"{', '.join(header) or 'no header'}. Expected file,label[,patient_id,...]."
        )
    meta_cols = [h for h in header if h not in ("file", "label", "patient_id", "mask")]
    rows, skipped, seen = [], [], set()
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            row = {k.strip(): v for k, v in row.items() if k}  # header cells as _read_header sees them
            file = (row.get("file") or "").strip()
            where = f"{csv_path.name} line {line_no}"
            if not file:
                skipped.append(Skipped(where, "empty 'file' cell"))
                continue
            path = (root / file).resolve()
            if not (row.get("label") or "").strip():
                skipped.append(Skipped(str(path), f"empty label ({where})"))
                continue
            if path in seen:
                skipped.append(Skipped(str(path), f"listed twice in the manifest ({where})"))
                continue
            seen.add(path)
            if not path.is_file():
                skipped.append(Skipped(str(path), f"listed in the manifest but not found ({where})"))
                continue
            mask = (row.get("mask") or "").strip()
            rows.append(Record(
                path, normalise_label(row["label"]), (row.get("patient_id") or "").strip() or None,
                (root / mask).resolve() if mask else None,
                {c: (row.get(c) or "").strip() for c in meta_cols},
            ))
    return _finish(root, "manifest", classes, rows, skipped, location=csv_path)


# ----------------------------------------------------------------------------- ieee8023
def ieee8023_label(finding: str) -> str:
    """Map an ieee8023 ``finding`` (old flat or new ``Pneumonia/Viral/COVID-19`` style) to a class."""
    f = finding.lower()
    if "covid" in f:
        return "covid"
    if "no finding" in f:
        return "normal"
    if "viral" in f or any(k in f for k in ("sars", "mers", "influenza", "varicella", "herpes")):
        return "viral_pneumonia"
    if "bacterial" in f or any(k in f for k in (
            "streptococcus", "klebsiella", "legionella", "e.coli", "mycoplasma",
            "chlamydophila", "staphylococcus", "nocardia", "pseudomonas")):
        return "bacterial_pneumonia"
    if "fungal" in f or "pneumocystis" in f or "aspergillosis" in f:
        return "fungal_pneumonia"
    if "tuberculosis" in f:
        return "tuberculosis"
    return "other"


def from_ieee8023(csv_path: str | Path, classes=None) -> CxrDataset:
    """The covid-chestxray-dataset ``metadata.csv``: X-rays in frontal views, patient ids kept."""
    csv_path = Path(csv_path).resolve()
    root = csv_path.parent
    rows, skipped, other = [], [], Counter()
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            modality = row.get("modality", "X-ray") or "X-ray"
            view = row.get("view", "").upper()
            if modality.lower() not in ("x-ray", "xray", "cxr"):
                other[f"modality:{modality}"] += 1
                continue
            if view not in IEEE_FRONTAL_VIEWS:
                other[f"view:{view or 'missing'}"] += 1
                continue
            path = (root / (row.get("folder") or "images") / row["filename"]).resolve()
            if not path.is_file():
                skipped.append(Skipped(str(path), f"listed in {csv_path.name} line {line_no} but not found"))
                continue
            meta = {k: v for k, v in row.items() if k not in ("patientid", "filename", "folder")}
            rows.append(Record(path, ieee8023_label(row["finding"]), f"ieee8023-{row['patientid']}",
                               None, meta))
    return _finish(root, "ieee8023", classes, rows, skipped, location=csv_path, other_excluded=other)
