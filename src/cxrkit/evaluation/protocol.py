"""Which split protocol produced a run's numbers, and how leaky it is.

A number without its protocol cannot be put next to another: on ``../shared/data/cxr`` a random
image split put 114 of 737 test images next to their own patient or a near-duplicate in train
(``docs/results/protocols.md``). So every headline number (``metrics.json``, ``report.html``,
the demo, ``cxr protocols``) names its protocol. The protocol is read from the run's
``config.yaml``; the leak count is recounted from its ``split.csv`` by
:func:`cxrkit.data.splits.split_checks`, the count ``cxr data split`` prints.
"""

from __future__ import annotations

from pathlib import Path

from ..data.duplicates import DEFAULT_MAX_DISTANCE, near_duplicate_pairs
from ..data.prepare import prepare
from ..data.splits import split_checks
from ..run import RunDir
from ..training.config import parse_yaml

KINDS = {"patient": "patient-disjoint", "image": "random image", "source": "leave-source-out"}


def split_facts(
    data, classes, split_file, dup_threshold: int, workers: int = 2, cache_dir=None, allow_outside_paths=False
) -> dict:
    """Leaked test images, classes absent from test, images left out, and counts per split."""
    prep = prepare(
        data,
        classes,
        split_file=split_file,
        workers=workers,
        cache_dir=cache_dir,
        allow_outside_paths=allow_outside_paths,
    )
    pairs = near_duplicate_pairs([i.phash for i in prep.infos], dup_threshold)
    counts = prep.split.counts(prep.dataset)
    return {
        **split_checks(prep.dataset, prep.split.assignment, pairs),
        "images": {s: sum(c.values()) for s, c in counts.items()},
        "counts": counts,
    }


def run_protocol(run_dir: str | Path, card, external: bool, workers: int = 2, cache_dir=None) -> dict:
    """``metrics.json``'s ``protocol``: {split_by, holdout_source, select, leaky, leaked_test_images, ...}.

    ``split_by`` is None for a run without ``config.yaml``; on external data nothing is counted
    (``leaked_test_images`` None): another dataset is used whole.
    """
    run = RunDir(run_dir)
    config = parse_yaml(run.config.read_text(), str(run.config)) if run.config.is_file() else {}
    protocol = {k: config.get(k) for k in ("split_by", "holdout_source", "select")}
    if external or not run.split.is_file():
        return {**protocol, "external": external, "leaky": False, "leaked_test_images": None}
    threshold = config.get("dup_threshold", DEFAULT_MAX_DISTANCE)
    facts = split_facts(
        card.data["path"],
        card.classes,
        run.split,
        threshold,
        workers,
        cache_dir,
        config.get("allow_outside_paths") is True,
    )
    leaky = protocol["split_by"] == "image" or facts["leaked_test_images"] > 0
    return {**protocol, "external": False, "leaky": leaky, **facts}


def protocol_label(protocol: dict | None, split: str = "test") -> str:
    """``patient-disjoint test split``, ``random image split: LEAKY, 114 test images share ...``."""
    if not protocol:
        return ""
    kind = KINDS.get(protocol.get("split_by"), "unknown-protocol (no config.yaml in the run)")
    if protocol.get("external"):
        return f"external data, used whole; the model was trained on a {kind} split"
    if split == "test":
        text = "random image split" if protocol.get("split_by") == "image" else f"{kind} test split"
    else:
        text = f"{split} images of a {kind} split" + (" (includes the training images)" if split == "all" else "")
    if protocol.get("holdout_source"):
        text += f", held out: {', '.join(protocol['holdout_source'])}"
    if protocol.get("leaky"):
        n = protocol.get("leaked_test_images")
        text += f": LEAKY, {n} test images share a patient or near-duplicate with train"
    if protocol.get("test_missing_classes"):
        text += f"; no test images of {', '.join(protocol['test_missing_classes'])}"
    if protocol.get("select"):
        text += f"; images selected by {', '.join(protocol['select'])}"
    return text
