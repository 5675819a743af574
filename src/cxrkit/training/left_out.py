"""What training leaves out, said out loud: skipped files and classes too small to measure.

A training set used to shrink without a word (63 of 70 files cached, nothing said about the
other 7), and a class with one image trained with 1/0/0 train/val/test. Now every file the
dataset skipped is written to ``RUN/skipped.csv`` (path, reason), counted in the card's
``data.skipped_count`` and shown on screen; a class with no val or test image, or fewer than
:data:`MIN_CLASS_IMAGES` in all, is a warning on screen and in the card's ``data.warnings``.
"""

from __future__ import annotations

from collections.abc import Callable

from .._io import atomic_write_text, csv_text
from ..data.dataset import CxrDataset
from ..data.multi import label_conflict_count
from ..run import RunDir

MIN_CLASS_IMAGES = 10  # below this a class's val/test metrics are a handful of coin flips
SHOWN = 5  # skipped files named on screen; all of them are in skipped.csv


def class_warnings(counts: dict[str, dict[str, int]], classes: list[str]) -> list[str]:
    """One warning per class of ``classes`` that cannot be measured: no val or test image, or too few."""
    warnings = []
    for c in classes:
        tr, va, te = (counts.get(s, {}).get(c, 0) for s in ("train", "val", "test"))
        if va == 0 or te == 0 or tr + va + te < MIN_CLASS_IMAGES:
            warnings.append(
                f"class {c} has {tr + va + te} image(s) (train/val/test {tr}/{va}/{te}); with fewer than "
                f"{MIN_CLASS_IMAGES}, or none in val or test, its metrics say little: add images of {c}"
            )
    return warnings


def write_skipped(run: RunDir, ds: CxrDataset) -> None:
    """``RUN/skipped.csv``: every skipped file with its reason (a header alone: none skipped)."""
    atomic_write_text(run.skipped, csv_text([("path", "reason"), *((s.path, s.reason) for s in ds.skipped)]))


def report_left_out(run: RunDir, ds: CxrDataset, counts: dict, classes: list[str], say: Callable[[str], None]) -> dict:
    """Say what training leaves out (before it starts); return the card's ``data`` fields."""
    skipped = ds.skipped
    if skipped:
        say(f"warning: {len(skipped)} file(s) left out of training, all listed in {run.skipped}:")
        for s in skipped[:SHOWN]:
            say(f"  skipped {s.path}: {s.reason}")
        if len(skipped) > SHOWN:
            say(f"  ... and {len(skipped) - SHOWN} more")
    warnings = class_warnings(counts, classes)
    for w in warnings:
        say(f"warning: {w}")
    return {
        "skipped_count": len(skipped),
        "label_conflicts": label_conflict_count(ds),  # of skipped_count: one film, two labels, two datasets
        "skipped_file": RunDir(".").skipped.name,
        "warnings": warnings,
    }
