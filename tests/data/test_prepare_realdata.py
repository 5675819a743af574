"""prepare() on the real chest X-ray set in ../shared/data/cxr (read in place, never copied)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from cxrkit.data import load_dataset, prepare
from cxrkit.data.duplicates import near_duplicate_pairs

CXR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr"
COUNTS = {"covid": 1427, "viral_pneumonia": 1348, "normal": 2136, "bacterial_pneumonia": 824}

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (CXR / "manifest.csv").is_file(),
        reason=f"real data not present: {CXR}/manifest.csv (see shared/data/README.md)",
    ),
]


@pytest.fixture(scope="module")
def prepared():
    return prepare(CXR, workers=2)


def test_default_classes_counts(prepared):
    ds = prepared.dataset
    assert ds.source == "manifest"
    assert ds.classes == ("covid", "viral_pneumonia", "normal")
    assert ds.class_counts() == {c: COUNTS[c] for c in ds.classes}
    assert dict(ds.excluded) == {"bacterial_pneumonia": 824}
    assert ds.skipped == []
    assert len(prepared.infos) == len(ds)
    assert {"population", "subsource"} <= set(ds.metadata_columns)


def test_split_is_patient_disjoint(prepared):
    ds, split = prepared.dataset, prepared.split
    splits_of = defaultdict(set)
    for rec, s in zip(ds.records, split.assignment):
        if rec.patient_id:
            splits_of[rec.patient_id].add(s)
    assert len(splits_of) > 1000
    assert [p for p, s in splits_of.items() if len(s) > 1] == []


def test_split_is_near_duplicate_disjoint(prepared):
    split = prepared.split
    hashes = [i.phash for i in prepared.infos]
    pairs = near_duplicate_pairs(hashes)
    assert split.stats["near_duplicate_pairs"] == len(pairs)
    assert [(a, b) for a, b in pairs if split.assignment[a] != split.assignment[b]] == []
    counts = split.counts(prepared.dataset)
    for s, frac in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        for c, n in prepared.dataset.class_counts().items():
            assert counts[s][c] / n == pytest.approx(frac, abs=0.03)


def test_all_classes_counts():
    ds = load_dataset(CXR, "all")
    assert ds.classes == tuple(sorted(COUNTS))
    assert ds.class_counts() == COUNTS
    assert not ds.excluded and not ds.skipped
