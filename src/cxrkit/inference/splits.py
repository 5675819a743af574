"""The model's logits on a split of a dataset: what evaluation, the audit and CAM summaries share.

``data`` defaults to the run's training data with the run's own ``split.csv``; any other data
is external validation and is used whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._numeric import softmax
from ..data.cache import cached_images
from ..data.dataset import CxrDataset
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

    def probs(self, temperature: float = 1.0) -> np.ndarray:
        return softmax(self.logits, temperature)

    @property
    def patient_groups(self) -> list[str | None] | None:
        """Patient ids for the bootstrap, or None when the data has none (resample images)."""
        ids = [r.patient_id for r in self.dataset.records]
        return ids if any(ids) else None


def is_external(card: ModelCard, data: str | Path) -> bool:
    """True when ``data`` is not the run's training data (a CSV counts as its folder)."""
    path = Path(data).expanduser().resolve()
    root = path.parent if path.is_file() else path
    return root != Path(card.data["path"]).resolve()


def predict_split(
    predictor: Predictor,
    data: str | Path | None = None,
    split: str | None = None,
    workers: int = 2,
    cache_dir: str | Path | None = None,
) -> SplitPredictions:
    """Logits of the model on ``split`` ("train", "val", "test" or "all") of ``data``.

    ``data`` defaults to the run's training data, read with the run's own split; other data
    (external validation) is used whole (``split`` "all"). Classes are matched by name:
    images of classes the model does not know are left out and counted.
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
    prep = prepare(data, predictor.classes, split_file=split_file, workers=workers, cache_dir=cache_dir)
    ds = prep.dataset if split == "all" else prep.split.subset(prep.dataset, split)
    if len(ds) == 0:
        raise UsageError(f"the {split} split of {data} is empty")
    specs = getattr(predictor.preprocessing, "specs", None)  # an ensemble whose members differ
    if specs is None:
        logits = predictor.logits_from_uint8(cached_images(ds, predictor.preprocessing, cache_dir, workers=workers))
    else:  # each member on its own cached pixels
        per_member = [cached_images(ds, spec, cache_dir, workers=workers) for spec in specs]
        logits = predictor.logits_from_member_uint8(per_member)
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
    )
