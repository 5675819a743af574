"""The model's logits on a split of a dataset: what evaluation, the audit and CAM summaries share.

``data`` defaults to the run's training data with the run's own ``split.csv``; any other data
is external validation and is used whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._numeric import other_abnormal, softmax
from ..data.classes import normalise_label
from ..data.dataset import CxrDataset
from ..data.multi import data_roots
from ..data.prepare import prepare
from ..errors import UsageError
from ..run import ModelCard, RunDir
from .predictor import Predictor


@dataclass
class SplitPredictions:
    dataset: CxrDataset  # the records that were predicted, in order
    y_true: np.ndarray
    logits: np.ndarray
    classes: list[str]
    excluded: dict
    missing_classes: list[str]
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}: unreadable, never predicted
    # films of labels that are not model classes, scored by a rule (``abnormal=``); y_true is -1
    abnormal: "SplitPredictions | None" = None
    aux_logits: np.ndarray | None = None  # (N, K) outputs of the model's auxiliary classes, if any

    def probs(self, temperature: float = 1.0) -> np.ndarray:
        return softmax(self.logits, temperature)

    def other_abnormal(self, temperature: float = 1.0) -> np.ndarray | None:
        """Probability of "abnormal, none of the classes" per image (None: no auxiliary outputs)."""
        if self.aux_logits is None:
            return None
        return other_abnormal(np.concatenate([self.logits, self.aux_logits], 1), len(self.classes), temperature)

    @property
    def patient_groups(self) -> list[str | None] | None:
        """Patient ids for the bootstrap, or None when the data has none (resample images)."""
        ids = [r.patient_id for r in self.dataset.records]
        return ids if any(ids) else None


def _roots(data) -> set[Path]:
    """The dataset folders that ``data`` (a path or a list of paths) stands for (a CSV: its folder)."""
    roots = set()
    for d in data_roots(data):
        path = Path(d).expanduser().resolve()
        roots.add(path.parent if path.is_file() else path)
    return roots


def is_external(card: ModelCard, data) -> bool:
    """True when ``data`` is not the run's training data: ``data`` a path (a CSV counts as its
    folder), a list of paths, or a :class:`CxrDataset` (a union is compared root by root)."""
    if isinstance(data, CxrDataset):
        data = [p["path"] for p in data.parts] if data.parts else data.root
    return _roots(data) != _roots(card.data["path"])


def predict_split(
    predictor: Predictor,
    data: str | Path | None = None,
    split: str | None = None,
    workers: int = 2,
    cache_dir: str | Path | None = None,
    abnormal: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SplitPredictions:
    """Logits of the model on ``split`` ("train", "val", "test" or "all") of ``data``.

    ``data`` defaults to the run's training data, read with the run's own split; other data
    (external validation) is used whole (``split`` "all"). Classes are matched by name:
    images of classes the model does not know are left out and counted, except the labels in
    ``abnormal`` (e.g. ``["pneumonia"]``), whose films are predicted into ``.abnormal`` for
    :mod:`cxrkit.evaluation.abnormal` (data used whole only). ``progress(done, total)``: the
    reading of the images.
    """
    card = predictor.run.card
    data = data or card.data["path"]
    external = is_external(card, data)
    split = split or ("all" if external else "test")
    if external and split != "all":
        raise UsageError(
            f"{data} is not the data this model was trained on, so it has no "
            f"{split!r} split of this run; evaluate it whole with --split all"
        )
    split_file = None if split == "all" else RunDir(predictor.run.run_dir).split
    outside = not external and RunDir(predictor.run.run_dir).reads_outside_paths()
    prep = prepare(
        data,
        predictor.classes,
        split_file=split_file,
        workers=workers,
        cache_dir=cache_dir,
        allow_outside_paths=outside,
        progress=progress,
    )
    ds = prep.dataset if split == "all" else prep.split.subset(prep.dataset, split)
    if len(ds) == 0:
        raise UsageError(f"the {split} split of {data} is empty")
    logits, aux = _logits(predictor, ds, cache_dir, workers)
    abnormal_preds = None
    if abnormal:
        abnormal_preds = _abnormal(predictor, data, split, abnormal, workers, cache_dir)
        scored = {r.label for r in abnormal_preds.dataset.records}
        excluded = {k: v for k, v in prep.dataset.excluded.items() if k not in scored}
        prep.dataset.excluded = type(prep.dataset.excluded)(excluded)
    missing = [c for c, n in prep.dataset.class_counts().items() if n == 0]
    skipped = [{"path": str(s.path), "reason": s.reason} for s in prep.dataset.skipped]
    return SplitPredictions(
        ds,
        ds.labels,
        logits,
        predictor.classes,
        dict(prep.dataset.excluded),
        missing,
        skipped,
        abnormal_preds,
        aux,
    )


def _logits(predictor: Predictor, ds: CxrDataset, cache_dir, workers: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits of the classes, logits of the auxiliary outputs or None)."""
    every = predictor.dataset_logits(ds, cache_dir, workers)
    n = len(predictor.classes)
    return every[:, :n], (every[:, n:] if every.shape[1] > n else None)


def _abnormal(predictor: Predictor, data, split: str, labels: list[str], workers: int, cache_dir) -> SplitPredictions:
    """The films labelled ``labels`` (not model classes) of ``data``, predicted."""
    wanted = [normalise_label(x) for x in labels]
    clash = sorted(set(wanted) & set(predictor.classes))
    if clash:
        raise UsageError(f"--abnormal {', '.join(clash)}: already a model class, scored as such; name other labels")
    if split != "all":
        raise UsageError(f"--abnormal scores data used whole (--split all or external data), not the {split} split")
    whole = prepare(data, "all", workers=workers, cache_dir=cache_dir).dataset
    ds = whole.select([r.label in wanted for r in whole.records])
    if len(ds) == 0:
        found = ", ".join(f"{c} ({n})" for c, n in whole.class_counts().items())
        raise UsageError(f"--abnormal {', '.join(wanted)}: no such films in {data}; its labels are {found}")
    logits, aux = _logits(predictor, ds, cache_dir, workers)
    return SplitPredictions(
        ds,
        np.full(len(ds), -1, np.int64),
        logits,
        predictor.classes,
        {},
        [c for c, n in ds.class_counts().items() if n == 0],
        [{"path": str(s.path), "reason": s.reason} for s in ds.skipped],
        aux_logits=aux,
    )
