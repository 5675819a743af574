"""Decode and resize each image once, keep the result as a uint8 array on disk.

Training reads every image once per epoch; decoding PNG/DICOM and resizing each time would
make the CPU wait on data. The cache is one ``.npy`` (N, S, S) uint8 file, memory-mapped,
named by a fingerprint of the files (path, size, mtime) and the preprocessing (with a ROI step:
its settings and the lung weights' sha256), so a changed file or setting makes a new cache and
a stale one is never read. A ROI step's fallbacks go to ``<cache>.roi.json`` beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._io import atomic_write_json, build_lock, text_bytes
from .dataset import CxrDataset
from .images import read_gray

if TYPE_CHECKING:  # annotations only: importing the cache must not import torch (cxr --help)
    from .pipeline import Pipeline as Preprocessing

# Bump when the pixels produced for the same files and settings change (decoder or
# Preprocessing code), so caches written by older code are not reused.
CACHE_VERSION = 3


def default_cache_dir() -> Path:
    base = os.environ.get("CXR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cxrkit"
    )
    return Path(base)


def files_fingerprint(paths: list[Path], settings: dict) -> str:
    """A key for results computed from ``paths`` with ``settings``: changes with any file's
    path, size or modification time, or any setting."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for p in paths:
        st = p.stat()
        h.update(text_bytes(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n"))  # any file name (not only UTF-8)
    return h.hexdigest()[:24]


def cache_key(paths: list[Path], spec: Preprocessing) -> str:
    """Where a lung model lives does not change the pixels (its weights' sha256, in the key, does):
    a run that carries its lung model (``lung_run: lungs``) finds the cache training built."""
    settings = {k: v for k, v in spec.to_dict().items() if k != "lung_run"}
    return files_fingerprint(paths, {"version": CACHE_VERSION, **settings})


def _load(job: tuple[Path, Preprocessing]) -> np.ndarray:
    path, spec = job
    return spec.to_uint8(read_gray(path))


def cached_images(
    dataset: CxrDataset,
    spec: Preprocessing,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Preprocessed uint8 images of ``dataset.records`` in order, as a read-only memmap."""
    paths = [r.path for r in dataset.records]
    target = _target(dataset, spec, cache_dir)
    if not target.exists():
        with build_lock(target):
            if not target.exists():  # another process may have built it while this one waited
                _build(target, [(p, spec) for p in paths], spec.input_size, workers, progress)
    return np.load(target, mmap_mode="r")


def roi_report(dataset: CxrDataset, spec: Preprocessing, cache_dir: str | Path | None = None) -> dict:
    """What a batched ROI step (e.g. ``roi: lungs``) did to the cached images:
    ``{"roi_images", "roi_fallbacks", "roi_fallback_examples"}``; ``{}`` without a ROI."""
    path = _target(dataset, spec, cache_dir).with_suffix(".roi.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _target(dataset: CxrDataset, spec: Preprocessing, cache_dir) -> Path:
    paths = [r.path for r in dataset.records]
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    return cache_dir / f"images-{cache_key(paths, spec)}-{len(paths)}x{spec.input_size}.npy"


def _build(target: Path, jobs: list[tuple[Path, Preprocessing]], size: int, workers: int, progress) -> None:
    """Write the cache to a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(jobs), size, size))
    if jobs and jobs[0][1].batched:  # e.g. a lung ROI step: its model stays in this process
        atomic_write_json(target.with_suffix(".roi.json"), _build_batched(arr, jobs, workers, progress))
    elif workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers) as pool:
            for i, img in enumerate(pool.map(_load, jobs, chunksize=16)):
                arr[i] = img
                if progress:
                    progress(i + 1, len(jobs))
    else:
        for i, job in enumerate(jobs):
            arr[i] = _load(job)
            if progress:
                progress(i + 1, len(jobs))
    arr.flush()
    del arr
    os.replace(tmp, target)


def _build_batched(arr: np.ndarray, jobs: list[tuple[Path, Preprocessing]], workers: int, progress) -> dict:
    """Decode in threads, then ``spec.to_uint8_many`` per batch of 32 (the segmenter runs on
    whole batches and is not pickled into worker processes); returns the fallback report."""
    from concurrent.futures import ThreadPoolExecutor

    spec, fallbacks = jobs[0][1], []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(jobs), 32):
            chunk = [p for p, _ in jobs[start : start + 32]]
            pixels, reasons = spec.to_uint8_many(list(pool.map(read_gray, chunk)))
            arr[start : start + len(chunk)] = pixels
            fallbacks += [f"{p}: {r}" for p, r in zip(chunk, reasons) if r != "ok"]
            if progress:
                progress(start + len(chunk), len(jobs))
    return {"roi_images": len(jobs), "roi_fallbacks": len(fallbacks), "roi_fallback_examples": fallbacks[:10]}
