"""(image, lung mask) pairs from any dataset whose records carry masks, with strict mask checks.

Sources: any layout :func:`cxrkit.data.load_dataset` reads (Kaggle v4 ``<CLASS>/masks/``, a
manifest's ``mask`` column) and ``lungmasks/manifest.csv`` of the shared data, whose ``file``
column is relative to the image folder (``../cxr`` beside it), not to the CSV: when a listed
image is not beside the CSV it is looked up under ``images_root`` (default: ``../cxr``).

A mask must be the image's size, binary (two levels: 0 and one other; JPEG-ish noise is
refused, not guessed away) and not empty; otherwise :class:`MaskError` names the file.

Images without a mask (a Kaggle folder missing some masks, a manifest row with an empty
``mask`` cell) and files the dataset skipped are not trained on; :func:`find_mask_pairs` returns
them with the reason, so the trainer lists them (``skipped.csv``) as the classifier does.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CxrkitError

__all__ = ["MaskError", "MaskPair", "read_mask", "mask_pairs", "find_mask_pairs"]

NO_MASK = "no lung mask (no mask of its name in masks/, or an empty 'mask' cell); left out"


class MaskError(CxrkitError, ValueError):
    """A lung mask that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class MaskPair:
    image: Path
    mask: Path
    patient_id: str | None
    population: str = ""
    label: str = ""


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A mask file as a (H, W) bool array; ``shape`` is the image's (H, W) it must match."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L") if im.mode not in ("L", "1", "I;16", "I") else im)
    except (OSError, ValueError) as exc:
        raise MaskError(f"{path}: cannot read the mask ({exc})") from exc
    if arr.ndim != 2:
        raise MaskError(f"{path}: a mask must be one gray channel, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise MaskError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} px but its image is "
            f"{shape[1]}x{shape[0]}; masks must have the image's size (resize with nearest neighbour)"
        )
    levels = np.unique(arr)
    if len(levels) > 2 or levels[0] != 0:
        shown = ", ".join(str(v) for v in levels[:6]) + (" ..." if len(levels) > 6 else "")
        raise MaskError(
            f"{path}: mask is not binary (levels {shown}); expected 0 outside the lungs "
            "and one value (e.g. 255) inside, saved losslessly (PNG)"
        )
    mask = arr > 0
    if not mask.any():
        raise MaskError(f"{path}: mask is empty (no lung pixel); drop it from the manifest or redraw it")
    return mask


def mask_pairs(data: str | Path, images_root: str | Path | None = None) -> list[MaskPair]:
    """Every image of ``data`` that has a mask; raises MaskError when none has."""
    return find_mask_pairs(data, images_root)[0]


def find_mask_pairs(
    data: str | Path, images_root: str | Path | None = None
) -> tuple[list[MaskPair], list[tuple[str, str]]]:
    """(every image of ``data`` that has a mask, (file, reason) of each one left out: no mask, or
    skipped by the dataset reader); raises MaskError when no image has a mask."""
    data = Path(data)
    if data.is_dir() and (data / MANIFEST).is_file() and _has_mask_column(data / MANIFEST):
        data = data / MANIFEST  # a lungmasks-style folder: manifest.csv + masks/, not class folders
    if data.is_file() and data.suffix.lower() == ".csv":
        pairs, left_out = _from_csv(data, Path(images_root) if images_root else data.resolve().parent.parent / "cxr")
    else:
        from ..data import load_dataset

        ds = load_dataset(data, classes="all", min_classes=1)
        pairs = [
            MaskPair(r.path, r.mask_path, r.patient_id, r.metadata.get("population", ""), r.label)
            for r in ds.records
            if r.mask_path is not None
        ]
        left_out = [(str(s.path), s.reason) for s in ds.skipped]
        left_out += [(str(r.path), NO_MASK) for r in ds.records if r.mask_path is None]
    if not pairs:
        raise MaskError(
            f"{data}: no image with a lung mask found"
            + (f" ({len(left_out)} file(s) without one)" if left_out else "")
            + "; give a manifest with a 'mask' column, a Kaggle v4 folder with <CLASS>/masks/, "
            "or lungmasks/manifest.csv"
        )
    return pairs, left_out


MANIFEST = "manifest.csv"


def _has_mask_column(csv_path: Path) -> bool:
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        return "mask" in (next(csv.reader(fh), None) or [])


def _from_csv(csv_path: Path, images_root: Path) -> tuple[list[MaskPair], list[tuple[str, str]]]:
    root = csv_path.resolve().parent
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"file", "mask"} <= set(rows[0]):
        raise MaskError(f"{csv_path}: needs columns 'file' and 'mask'; found {', '.join(rows[0])}")
    pairs, left_out = [], []
    for line, row in enumerate(rows, start=2):
        file, mask = (row.get("file") or "").strip(), (row.get("mask") or "").strip()
        if not file:
            left_out.append((f"{csv_path.name} line {line}", "empty 'file' cell; left out"))
            continue
        image = root / file if (root / file).is_file() else images_root / file
        if not mask:
            left_out.append((str(image), f"empty 'mask' cell ({csv_path.name} line {line}); left out"))
            continue
        mask_path = root / mask if (root / mask).is_file() else root / "masks" / mask
        for p in (image, mask_path):
            if not p.is_file():
                raise MaskError(
                    f"{csv_path} line {line}: {p} not found (images are looked up beside the CSV, "
                    f"then under {images_root}; pass images_root / --images-root)"
                )
        pairs.append(
            MaskPair(
                image,
                mask_path,
                (row.get("patient_id") or "").strip() or None,
                (row.get("population") or "").strip(),
                (row.get("label") or "").strip(),
            )
        )
    return pairs, left_out
