"""Dataset -> validated, hashed, split: the step every command starts from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .dataset import CxrDataset
from .duplicates import DEFAULT_MAX_DISTANCE
from .scan import ImageInfo, scan_dataset
from .sources import load_dataset
from .splits import DEFAULT_FRACTIONS, Split, make_split, read_split


@dataclass
class Prepared:
    dataset: CxrDataset
    infos: list[ImageInfo]
    split: Split


def prepare(
    data: str | Path,
    classes=None,
    *,
    split_file: str | Path | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    cache_dir: str | Path | None = None,
    allow_outside_paths: bool = False,
    split_by: str = "patient",
    holdout: list[str] | None = None,
    select: list[str] | None = None,
) -> Prepared:
    """Load ``data``, decode every image once (bad files go to ``skipped``) and split it.

    ``split_by``/``holdout``/``select``: the protocol (:mod:`.splits`). With ``split_file`` the saved
    split is applied instead of making a new one. The scan is
    kept in ``cache_dir`` (default: :func:`~cxrkit.data.cache.default_cache_dir`).
    ``allow_outside_paths`` lets manifest rows point outside the manifest's folder.
    """
    dataset = load_dataset(data, classes, allow_outside_paths=allow_outside_paths)
    dataset, infos = scan_dataset(dataset, workers=workers, progress=progress, cache_dir=cache_dir)
    if split_file is not None:
        split = read_split(split_file, dataset)
    else:
        split = make_split(
            dataset,
            [i.phash for i in infos],
            fractions,
            seed,
            max_distance,
            by=split_by,
            holdout=holdout,
            select=select,
        )
    return Prepared(dataset, infos, split)
