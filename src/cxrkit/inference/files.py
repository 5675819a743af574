"""Which files to predict: paths as given, folders searched recursively for images."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..data.images import is_image_file
from ..data.sources import _sniff_dicom  # the dataset reader's own test, so both find the same files
from .predictor import Failure


def find_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[Failure], int]:
    """(image files, paths that do not exist, count of non-image files skipped in folders).

    A file named explicitly is always kept (if it is not an image, prediction says why);
    inside folders only image suffixes and suffix-less DICOM files are taken, hidden files
    and folders skipped, in sorted order. Each file appears once.
    """
    files: list[Path] = []
    missing: list[Failure] = []
    ignored = 0
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found, skipped = _walk(path)
            files.extend(found)
            ignored += skipped
        elif path.exists():
            files.append(path)
        else:
            missing.append(Failure(str(given), "no such file or folder"))
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, missing, ignored


def _walk(root: Path) -> tuple[list[Path], int]:
    found, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if is_image_file(path) or (not path.suffix and _sniff_dicom(path)):
                found.append(path)
            else:
                ignored += 1
    return found, ignored

