"""Read datasets from the layouts people actually have: one small class per layout.

* :class:`ClassFolders`: one folder per class, including both Kaggle "COVID-19 Radiography
  Database" layouts (v1: ``COVID-19/``, ``NORMAL/``, ``Viral Pneumonia/`` flat; v4+:
  ``COVID/images`` with ``COVID/masks``), optional ``train/val/test`` folders above the classes;
* :class:`Manifest`: a CSV ``file,label[,patient_id,...]`` with paths relative to the CSV,
  every extra column kept as metadata;
* :class:`Ieee8023`: the covid-chestxray-dataset ``metadata.csv`` (finding -> class, frontal
  X-rays only).

Each source says whether it recognises a path (``detect``) and lists its records
(``records``). :func:`load_dataset` asks the registered sources in turn, newest first, so a
project can add its own layout with :func:`register_source` without touching this file.
Built in: a CSV with the ieee8023 columns is :class:`Ieee8023`, any other CSV (or a folder
with ``manifest.csv``, else ``metadata.csv``) a :class:`Manifest`, any other folder
:class:`ClassFolders`.

Manifest paths must stay inside the manifest's folder (``../`` and absolute paths are
skipped with the reason) unless ``allow_outside_paths=True``: a shared manifest must not make
cxrkit open ``/etc/passwd``. Every file left out is in ``CxrDataset.skipped`` with the reason.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CxrkitError
from .classes import LABEL_ALIASES, normalise_label, parse_classes
from .dataset import CxrDataset, Record, Skipped
from .files import FileReadError, file_problem, is_image_file, iter_image_files, read_bounded

SPLIT_DIR_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}
MASK_DIR_NAMES = ("masks", "mask")
IEEE_COLUMNS = {"patientid", "finding", "filename"}
IEEE_FRONTAL_VIEWS = {"PA", "AP", "AP SUPINE", "AP ERECT", "AP SEMI ERECT"}
# Kermany pediatric files are named person<N>_virus_<k>.jpeg: N identifies the child.
KERMANY_PERSON = re.compile(r"^person(\d+)_", re.IGNORECASE)
KNOWN_CLASSES = frozenset(LABEL_ALIASES.values())
# A manifest above 64 MiB (about 500,000 rows of the real one) is not a manifest.
MAX_MANIFEST_BYTES = 64 * 2**20


class DatasetError(CxrkitError, ValueError):
    """The dataset as a whole cannot be read (wrong layout, bad manifest header, ...)."""


@dataclass
class Found:
    """What a source read, before class selection: records plus everything left out and why."""

    root: Path
    records: list[Record]
    skipped: list[Skipped] = field(default_factory=list)
    ignored: int = 0
    location: Path | None = None
    other_excluded: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


class Source:
    """One dataset layout. ``detect(path)`` is cheap (no image is opened); ``records(path)``
    lists the images. ``allow_outside_paths`` lets listed paths leave the dataset folder."""

    name = "source"

    def __init__(self, allow_outside_paths: bool = False):
        self.allow_outside_paths = allow_outside_paths

    @classmethod
    def detect(cls, path: Path) -> bool:
        raise NotImplementedError

    def records(self, path: Path) -> Found:
        raise NotImplementedError


SOURCES: list[type[Source]] = []


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: make ``cls`` a dataset layout :func:`load_dataset` tries, before the
    ones registered earlier (so a specific layout can claim a path before the generic ones)."""
    SOURCES.insert(0, cls)
    return cls


def load_dataset(
    path: str | Path,
    classes: str | list[str] | None = None,
    *,
    allow_outside_paths: bool = False,
    min_classes: int = 2,
) -> CxrDataset:
    """Read ``path`` (a folder or a CSV) keeping ``classes`` in that order.

    Args:
        path: class folders, a Kaggle layout, a manifest CSV or an ieee8023 ``metadata.csv``.
        classes: a list, a comma-separated string, None for the default (covid,
            viral_pneumonia, normal) or ``"all"`` for every class found, sorted.
        allow_outside_paths: read manifest rows whose path leaves the manifest's folder.
        min_classes: ``"all"`` must find at least this many classes (training needs two; a
            site's labeled films for ``cxr adapt`` may hold one).

    Returns:
        The dataset: its records, classes, the files skipped with their reason and the images
        of other labels counted in ``excluded``.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if not path.is_dir() and path.suffix.lower() != ".csv":
        raise DatasetError(f"{path}: expected a folder of class folders or a CSV manifest")
    for cls in SOURCES:
        if cls.detect(path):
            return _finish(cls.name, classes, cls(allow_outside_paths).records(path), min_classes)
    raise DatasetError(
        f"{path}: not a dataset layout cxrkit knows (class folders, a manifest CSV, or an ieee8023 metadata.csv)"
    )


def _resolve_classes(classes, found: Counter, root: Path, min_classes: int = 2) -> tuple[str, ...]:
    if isinstance(classes, str) and classes.strip().lower() == "all":
        if len(found) < min_classes or not found:
            raise DatasetError(
                f"{root}: need at least {'two classes' if min_classes == 2 else f'{min_classes} class(es)'}, found "
                f"{', '.join(f'{c} ({n})' for c, n in sorted(found.items())) or 'no images'}"
            )
        return tuple(sorted(found))
    return parse_classes(classes)


def _finish(source: str, classes, f: Found, min_classes: int = 2) -> CxrDataset:
    found = Counter(r.label for r in f.records)
    selected = _resolve_classes(classes, found, f.root, min_classes)
    if not any(found.get(c) for c in selected):
        raise DatasetError(
            f"{f.root}: none of the classes {', '.join(selected)} were found; the data has "
            f"{', '.join(f'{c} ({n})' for c, n in sorted(found.items())) or 'no images'}. "
            "Choose classes with --classes (e.g. --classes all)."
            + (
                f" {len(f.skipped)} listed file(s) were skipped, e.g. {f.skipped[0].path}: {f.skipped[0].reason}."
                if f.skipped
                else ""
            )
        )
    keep = set(selected)
    excluded = Counter(f.other_excluded)
    excluded.update(r.label for r in f.records if r.label not in keep)
    records = sorted((r for r in f.records if r.label in keep), key=lambda r: str(r.path))
    return CxrDataset(
        f.root, source, selected, records, f.skipped, excluded, f.ignored, f.location or f.root, notes=f.notes
    )


# ----------------------------------------------------------------------------- folders
@register_source
class ClassFolders(Source):
    """``root/<class>/**/image``, through one zip wrapper folder, with ``train/val/test``
    parents and Kaggle v4 ``images/`` + ``masks/``; see the module docstring."""

    name = "folders"

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir()

    def records(self, path: Path) -> Found:
        root = Path(path).resolve()
        base = _unwrap(root)
        split_dirs = [d for d in _subdirs(base) if d.name.lower() in SPLIT_DIR_NAMES]
        parents = [(d, d.name.lower()) for d in split_dirs] if split_dirs else [(base, None)]
        found = Found(root, [])
        for parent, source_split in parents:
            for class_dir in _subdirs(parent):
                label = normalise_label(class_dir.name)
                meta = {"source_split": source_split} if source_split else {}
                for image, mask in _class_images(class_dir, found):
                    found.records.append(Record(image, label, _patient_from_name(image.name), mask, dict(meta)))
        if not found.records:
            raise DatasetError(
                f"{root}: no images found. Expected one folder per class (e.g. covid/, normal/, "
                "viral_pneumonia/), a manifest.csv, or an ieee8023 metadata.csv."
                + (
                    f" {len(found.skipped)} file(s) were skipped, e.g. {found.skipped[0].path}: "
                    f"{found.skipped[0].reason}."
                    if found.skipped
                    else ""
                )
            )
        return found


def from_folders(root: str | Path, classes=None) -> CxrDataset:
    return _finish(ClassFolders.name, classes, ClassFolders().records(Path(root)))


def _unwrap(base: Path) -> Path:
    """Descend through folders a zip unpacks to (``COVID-19 Radiography Database/``): one
    subfolder, no images beside it, and not itself a class (``covid/``) or split folder."""
    while True:
        subdirs = _subdirs(base)
        if len(subdirs) != 1:
            return base
        only = subdirs[0]
        if (
            only.name.lower() in SPLIT_DIR_NAMES
            or _key_label(only.name) in KNOWN_CLASSES
            or _has_images(base)
            or _has_images(only)
        ):
            return base
        base = only


def _key_label(name: str) -> str | None:
    try:
        return normalise_label(name)
    except CxrkitError:
        return None


def _has_images(folder: Path) -> bool:
    return any(is_image_file(p) for p in folder.iterdir() if not p.name.startswith(".") and not p.is_dir())


def _subdirs(path: Path) -> list[Path]:
    # __MACOSX: resource forks that zips made on a Mac carry beside the real folders
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _class_images(class_dir: Path, found: Found) -> list[tuple[Path, Path | None]]:
    """Images of one class folder with their masks (Kaggle v4 ``images/`` + ``masks/``);
    non-images are counted in ``found.ignored``, unreadable files added to ``found.skipped``."""
    image_dir = class_dir / "images"
    masks: dict[str, Path] = {}
    if image_dir.is_dir():
        mask_dirs = [class_dir / n for n in MASK_DIR_NAMES if (class_dir / n).is_dir()]
        masks = {f.path.stem: f.path for f in iter_image_files(mask_dirs) if f.is_image and not f.skip_reason}
        search, skip = image_dir, ()
    else:
        search, skip = class_dir, MASK_DIR_NAMES
    images = []
    for f in iter_image_files([search], skip_dirs=skip):
        if f.skip_reason:
            found.skipped.append(Skipped(str(f.path), f.skip_reason))
        elif f.is_image:
            images.append((f.path, masks.get(f.path.stem)))
        else:
            found.ignored += 1
    return images


def _patient_from_name(name: str) -> str | None:
    m = KERMANY_PERSON.match(name)
    return f"kermany-{m.group(1)}" if m else None


# ----------------------------------------------------------------------------- CSV sources
def _csv_of(path: Path) -> Path | None:
    """The CSV a path stands for: itself, or a folder's manifest.csv, else its metadata.csv."""
    if not path.is_dir():
        return path if path.suffix.lower() == ".csv" else None
    # exists(), not is_file(): a manifest.csv that is a FIFO or a dangling link is reported, not passed over
    return next((path / n for n in ("manifest.csv", "metadata.csv") if os.path.lexists(path / n)), None)


def _read_table(path: Path, notes: list[str] | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV: UTF-8 (with or without BOM), else Latin-1, said in ``notes``."""
    try:
        data = read_bounded(path, MAX_MANIFEST_BYTES)
    except FileReadError as exc:
        raise DatasetError(f"{path}: cannot read the manifest: {exc.reason}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if b"\0" in data:
            raise DatasetError(
                f"{path}: not a text CSV (NUL bytes; {exc.reason} at byte {exc.start}); save the manifest as UTF-8 CSV"
            ) from None
        text = data.decode("latin-1")
        if notes is not None:
            notes.append(
                f"{path.name} is not valid UTF-8 (byte {exc.start}); read it as Latin-1. "
                "Save it as UTF-8 to be sure of non-ASCII names."
            )
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip() for h in next(reader, [])]
        rows = [dict(zip(header, (c.strip() for c in cells))) for cells in reader if cells]  # as DictReader
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc}); expected file,label[,patient_id,...]") from None
    return header, rows


def _no_rows(path: Path, header: list[str]) -> DatasetError:
    return DatasetError(f"{path}: the manifest has a header ({', '.join(header)}) but no rows; add one row per image")


class _CsvSource(Source):
    def _inside(self, root: Path, rel: str) -> tuple[Path, str | None]:
        """(resolved path, why it is refused or None): paths must stay under ``root``."""
        lexical = Path(os.path.normpath(root / rel))
        if not self.allow_outside_paths and (Path(rel).is_absolute() or not lexical.is_relative_to(root)):
            return lexical, (
                "outside the dataset folder " + str(root) + " (absolute or ../ path); "
                "pass --allow-outside-paths (allow_outside_paths=True) if that is intended"
            )
        return (root / rel).resolve(), None


@register_source
class Manifest(_CsvSource):
    """CSV with ``file,label[,patient_id][,mask][,...]``; paths relative to the CSV's folder."""

    name = "manifest"

    @classmethod
    def detect(cls, path: Path) -> bool:
        return _csv_of(path) is not None

    def records(self, path: Path) -> Found:
        csv_path = _csv_of(path).resolve()
        root = csv_path.parent
        found = Found(root, [], location=csv_path)
        header, table = _read_table(csv_path, found.notes)
        missing = {"file", "label"} - set(header)
        if missing:
            shown = ", ".join(header)
            raise DatasetError(
                f"{csv_path}: manifest lacks column(s) {', '.join(sorted(missing))}; found "
                f"{(shown[:200] + '...' if len(shown) > 200 else shown) or 'no header'}. "
                "Expected file,label[,patient_id,...]."
            )
        if not table:
            raise _no_rows(csv_path, header)
        meta_cols = [h for h in header if h not in ("file", "label", "patient_id", "mask")]
        seen = set()
        for line_no, row in enumerate(table, start=2):
            file, where = row.get("file", ""), f"{csv_path.name} line {line_no}"
            if not file:
                found.skipped.append(Skipped(where, "empty 'file' cell"))
                continue
            path, refused = self._inside(root, file)
            reason = (refused and f"{refused} ({where})") or self._problem(row, path, seen, where)
            if reason:
                found.skipped.append(Skipped(str(path), reason))
                continue
            mask = row.get("mask", "")
            mask_path, mask_refused = self._inside(root, mask) if mask else (None, None)
            found.records.append(
                Record(
                    path,
                    normalise_label(row["label"]),
                    row.get("patient_id") or None,
                    None if mask_refused else mask_path,
                    {c: row.get(c, "") for c in meta_cols},
                )
            )
        return found

    @staticmethod
    def _problem(row: dict, path: Path, seen: set, where: str) -> str | None:
        if not row.get("label"):
            return f"empty label ({where})"
        if path in seen:
            return f"listed twice in the manifest ({where})"
        seen.add(path)
        return _missing_or_odd(path, f"listed in the manifest but not found ({where})", where)


def _missing_or_odd(path: Path, not_found: str, where: str) -> str | None:
    """Why a listed ``path`` cannot be read (``not_found`` when it does not exist), or None."""
    if path.is_file():
        return None
    problem = file_problem(path)
    if problem is None:
        return None
    return not_found if problem == "file not found" else f"{problem} ({where})"


def from_manifest(csv_path: str | Path, classes=None, *, allow_outside_paths: bool = False) -> CxrDataset:
    return _finish(Manifest.name, classes, Manifest(allow_outside_paths).records(Path(csv_path)))


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
    if "bacterial" in f or any(
        k in f
        for k in (
            "streptococcus",
            "klebsiella",
            "legionella",
            "e.coli",
            "mycoplasma",
            "chlamydophila",
            "staphylococcus",
            "nocardia",
            "pseudomonas",
        )
    ):
        return "bacterial_pneumonia"
    if "fungal" in f or "pneumocystis" in f or "aspergillosis" in f:
        return "fungal_pneumonia"
    if "tuberculosis" in f:
        return "tuberculosis"
    return "other"


@register_source
class Ieee8023(_CsvSource):
    """The covid-chestxray-dataset ``metadata.csv``: X-rays in frontal views, patient ids kept."""

    name = "ieee8023"

    @classmethod
    def detect(cls, path: Path) -> bool:
        csv_path = _csv_of(path)
        if csv_path is None:
            return False
        try:
            return IEEE_COLUMNS <= set(_read_table(csv_path)[0])
        except DatasetError:
            return False  # the manifest reader reports what is wrong with it

    def records(self, path: Path) -> Found:
        csv_path = _csv_of(path).resolve()
        root = csv_path.parent
        found = Found(root, [], location=csv_path)
        header, table = _read_table(csv_path, found.notes)
        if not table:
            raise _no_rows(csv_path, header)
        for line_no, row in enumerate(table, start=2):
            modality = row.get("modality", "X-ray") or "X-ray"
            view = row.get("view", "").upper()
            if modality.lower() not in ("x-ray", "xray", "cxr"):
                found.other_excluded[f"modality:{modality}"] += 1
                continue
            if view not in IEEE_FRONTAL_VIEWS:
                found.other_excluded[f"view:{view or 'missing'}"] += 1
                continue
            where = f"{csv_path.name} line {line_no}"
            path, refused = self._inside(root, os.path.join(row.get("folder") or "images", row.get("filename", "")))
            reason = (refused and f"{refused} ({where})") or _missing_or_odd(
                path, f"listed in {where} but not found", where
            )
            if reason:
                found.skipped.append(Skipped(str(path), reason))
                continue
            meta = {k: v for k, v in row.items() if k not in ("patientid", "filename", "folder")}
            found.records.append(
                Record(path, ieee8023_label(row.get("finding", "")), f"ieee8023-{row.get('patientid', '')}", None, meta)
            )
        return found


def from_ieee8023(csv_path: str | Path, classes=None, *, allow_outside_paths: bool = False) -> CxrDataset:
    return _finish(Ieee8023.name, classes, Ieee8023(allow_outside_paths).records(Path(csv_path)))
