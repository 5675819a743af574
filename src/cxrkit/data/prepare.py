"""Dataset -> validated, hashed, split: the step every command starts from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .classes import normalise_label, parse_classes
from .dataset import CxrDataset
from .duplicates import DEFAULT_MAX_DISTANCE
from .multi import label_conflicts, load_data
from .scan import ImageInfo, scan_dataset
from .splits import DEFAULT_FRACTIONS, Split, make_split, read_split, split_with_auxiliary


@dataclass
class Prepared:
    dataset: CxrDataset
    infos: list[ImageInfo]
    split: Split


def prepare(
    data: str | Path | list,
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
    aux_classes: list[str] | None = None,
) -> Prepared:
    """Load ``data`` (one dataset, or a list read as one: :mod:`.multi`), decode every image once
    (bad files go to ``skipped``) and split it.

    ``split_by``/``holdout``/``select``: the protocol (:mod:`.splits`). With ``split_file`` the saved
    split is applied instead of making a new one. The scan is
    kept in ``cache_dir`` (default: :func:`~cxrkit.data.cache.default_cache_dir`).
    ``allow_outside_paths`` lets manifest rows point outside the manifest's folder.
    ``aux_classes`` are loaded after ``classes`` and split by :func:`.splits.split_with_auxiliary`.
    """
    aux = tuple(normalise_label(c) for c in aux_classes) if aux_classes else ()
    if aux:
        if isinstance(classes, str) and classes.strip().lower() == "all":
            raise UsageError("aux_classes needs an explicit class list, not classes='all'")
        main = parse_classes(classes)
        clash = sorted(set(main) & set(aux))
        if clash:
            raise UsageError(f"{', '.join(clash)}: listed both as a class and as an auxiliary class")
        classes = [*main, *aux]
    dataset = load_data(data, classes, allow_outside_paths=allow_outside_paths)
    dataset, infos = scan_dataset(dataset, workers=workers, progress=progress, cache_dir=cache_dir)
    dataset, infos = label_conflicts(dataset, infos, max_distance)  # the split's rule of one film
    if split_file is not None:
        split = read_split(split_file, dataset)
    else:
        protocol = dict(fractions=fractions, seed=seed, max_distance=max_distance, by=split_by, holdout=holdout)
        hashes = [i.phash for i in infos]
        if aux:
            split = split_with_auxiliary(dataset, aux, hashes, select=select, **protocol)
        else:
            split = make_split(dataset, hashes, select=select, **protocol)
    return Prepared(dataset, infos, split)
