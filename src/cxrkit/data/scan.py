"""Decode every image of a dataset once: validate it, record its size and mode, hash it.

Files that cannot be decoded move from the dataset to its ``skipped`` list with the reason;
the scan goes on. The result feeds the splitter (hashes) and ``cxr data inspect`` (sizes).
It is kept in the cache folder, keyed by the files (path, size, mtime): training, evaluation,
the audit and every process of a distributed run read it instead of decoding everything again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from .._io import atomic_write_json, build_lock
from .cache import default_cache_dir, files_fingerprint
from .dataset import CxrDataset, Skipped
from .duplicates import phash
from .files import FileReadError, read_bounded
from .images import ImageReadError, is_dicom, read_image

# Bump when what a scan finds for the same file changes (decoder, hash or reasons).
SCAN_VERSION = 2


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str
    phash: str


def describe_image(path) -> ImageInfo:
    """Decode ``path`` fully and describe it; raises :class:`ImageReadError`."""
    try:
        data = read_bounded(path)  # regular files only, size-bounded: a FIFO or /dev/zero never blocks the scan
    except FileReadError as exc:
        raise ImageReadError(path, exc.reason) from None
    gray = read_image(data, name=str(path))
    if is_dicom(data):
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        mode = f"DICOM {ds.get('PhotometricInterpretation', '?')} {ds.get('BitsStored', '?')}-bit"
    else:
        with Image.open(io.BytesIO(data)) as img:
            mode = img.mode
    return ImageInfo(gray.shape[1], gray.shape[0], mode, phash(gray))


def _describe_or_error(path) -> ImageInfo | str:
    try:
        return describe_image(path)
    except ImageReadError as exc:
        return exc.reason


def scan_dataset(
    dataset: CxrDataset,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[CxrDataset, list[ImageInfo]]:
    """Return the dataset without unreadable files (added to ``skipped``) and the info per record."""
    paths = [r.path for r in dataset.records]
    saved = Path(cache_dir or default_cache_dir()) / f"scan-{files_fingerprint(paths, {'scan': SCAN_VERSION})}.json"
    results = _read_saved(saved, len(paths))
    if results is None:
        with build_lock(saved):
            results = _read_saved(saved, len(paths))  # another process may have scanned meanwhile
            if results is None:
                results = _scan(paths, workers, progress)
                atomic_write_json(saved, [asdict(r) if isinstance(r, ImageInfo) else {"error": r} for r in results])
                progress = None  # reported image by image
    if progress:
        progress(len(paths), len(paths))
    ok = [isinstance(r, ImageInfo) for r in results]
    clean = dataset.select(ok)
    clean.skipped.extend(Skipped(str(p), reason) for p, reason in zip(paths, results) if isinstance(reason, str))
    return clean, [r for r in results if isinstance(r, ImageInfo)]


def _scan(paths: list[Path], workers: int, progress) -> list[ImageInfo | str]:
    results: list[ImageInfo | str] = []
    if workers > 1 and len(paths) > 64:
        with ProcessPoolExecutor(workers) as pool:
            for res in pool.map(_describe_or_error, paths, chunksize=32):
                results.append(res)
                if progress:
                    progress(len(results), len(paths))
    else:
        for p in paths:
            results.append(_describe_or_error(p))
            if progress:
                progress(len(results), len(paths))
    return results


def _read_saved(path: Path, n: int) -> list[ImageInfo | str] | None:
    """An earlier scan of the same files, or None (missing, unreadable or not for ``n`` files)."""
    try:
        rows = json.loads(path.read_text())
        if len(rows) != n:
            return None
        return [str(r["error"]) if "error" in r else ImageInfo(**r) for r in rows]
    except (OSError, ValueError, TypeError, KeyError):
        return None
