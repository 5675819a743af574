"""Which files to predict: paths as given, folders searched recursively for images.

The walk is the dataset reader's own (:func:`cxrkit.data.files.iter_image_files`), so
``cxr predict DIR`` and ``cxr data inspect DIR`` find the same files, and neither ever opens
a FIFO, a device or a dangling symlink.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..data.files import iter_image_files
from .predictor import Failure


def find_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[Failure], int]:
    """(image files, paths that cannot be read with the reason, count of non-image files skipped in folders).

    A file named explicitly is always kept (if it is not an image, prediction says why);
    inside folders only image suffixes and suffix-less DICOM files are taken, hidden files
    and folders skipped, in sorted order. Each file appears once. Paths that do not exist
    and files that are not regular (FIFO, device, dangling symlink) are failures with the reason.
    """
    files: list[Path] = []
    failed: list[Failure] = []
    ignored = 0
    for found in iter_image_files(paths):
        if found.skip_reason:
            missing = found.skip_reason == "file not found"
            failed.append(Failure(str(found.path), "no such file or folder" if missing else found.skip_reason))
        elif found.is_image:
            files.append(found.path)
        else:
            ignored += 1
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, failed, ignored
