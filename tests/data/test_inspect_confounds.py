"""inspect: dataset summary and confound tables (a metadata column that predicts the class)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cxrkit.data.dataset import CxrDataset, Record, Skipped
from cxrkit.data.inspect import CONFOUND_WARN_ACCURACY, MISSING, confound_table, inspect_dataset
from cxrkit.data.scan import ImageInfo
from cxrkit.data.splits import make_split

ROOT = Path("/nonexistent/cxr")
CLASSES = ("covid", "viral_pneumonia", "normal")


def _dataset(n_per_class: int = 60) -> CxrDataset:
    """covid all adult, viral all pediatric, normal half/half; 'site' independent of class."""
    recs = []
    for c in CLASSES:
        for k in range(n_per_class):
            population = {"covid": "adult", "viral_pneumonia": "pediatric"}.get(c) or (
                "adult" if k % 2 else "pediatric"
            )
            meta = {"population": population, "site": f"s{k % 3}", "uid": f"{c}{k}"}
            if k % 10 == 0:
                del meta["site"]  # some records have no value
            pid = f"{c}-p{k // 3}" if k < 30 else None
            mask = ROOT / "masks" / f"{c}{k}.png" if c == "covid" and k < 5 else None
            recs.append(Record(ROOT / c / f"{k:03d}.png", c, pid, mask, meta))
    return CxrDataset(
        ROOT,
        "manifest",
        CLASSES,
        recs,
        [Skipped("/x/bad.png", "file is empty (0 bytes)")],
        Counter({"lung_opacity": 7}),
        2,
    )


def _pair(table: dict, a: str, b: str) -> float:
    [acc] = [p["balanced_accuracy_from_column"] for p in table["pairwise"] if p["classes"] == [a, b]]
    return acc


def test_perfectly_separating_column_warns():
    t = confound_table(_dataset(), "population")
    assert t["column"] == "population"
    assert t["table"] == {
        "adult": {"covid": 60, "viral_pneumonia": 0, "normal": 30},
        "pediatric": {"covid": 0, "viral_pneumonia": 60, "normal": 30},
    }
    assert _pair(t, "covid", "viral_pneumonia") == 1.0
    assert _pair(t, "covid", "normal") == 0.75
    assert _pair(t, "viral_pneumonia", "normal") == 0.75
    assert len(t["warnings"]) == 1
    w = t["warnings"][0]
    assert "'population'" in w and "covid" in w and "viral_pneumonia" in w and "1.000" in w
    assert 0.5 < t["cramers_v"] <= 1.0


def test_uninformative_column_no_warning():
    t = confound_table(_dataset(), "site")
    assert set(t["table"]) == {"s0", "s1", "s2", MISSING}
    assert t["table"][MISSING] == {c: 6 for c in CLASSES}
    for p in t["pairwise"]:
        assert p["balanced_accuracy_from_column"] == pytest.approx(0.5, abs=0.01)
    assert t["warnings"] == []
    assert t["cramers_v"] == pytest.approx(0.0, abs=0.01)
    assert max(p["balanced_accuracy_from_column"] for p in t["pairwise"]) < CONFOUND_WARN_ACCURACY


def test_too_many_values_not_tabulated():
    t = confound_table(_dataset(), "uid")
    assert t["values"] == 180 and "too many" in t["note"] and "warnings" not in t


def test_class_without_images_left_out_of_pairs():
    ds = _dataset()
    ds = ds.select([r.label != "normal" for r in ds.records])
    t = confound_table(ds, "population")
    assert [p["classes"] for p in t["pairwise"]] == [["covid", "viral_pneumonia"]]


def _infos(ds: CxrDataset) -> list[ImageInfo]:
    return [ImageInfo(256 + (i % 2) * 64, 256, "L" if i % 4 else "RGB", f"{i:064x}") for i in range(len(ds))]


def test_inspect_dataset_report():
    ds = _dataset()
    infos = _infos(ds)
    split = make_split(ds, [i.phash for i in infos], seed=0)
    rep = inspect_dataset(ds, infos, split)
    assert set(rep) == {
        "dataset",
        "images_per_class",
        "missing_classes",
        "excluded",
        "ignored_non_image_files",
        "skipped_count",
        "skipped",
        "label_conflicts",
        "notes",
        "split",
        "image_sizes",
        "image_modes",
        "masks",
        "patients",
        "confounds",
        "warnings",
    }
    json.dumps(rep)  # JSON-ready
    assert rep["dataset"] == {"root": str(ROOT), "source": "manifest", "classes": list(CLASSES), "images": 180}
    assert rep["images_per_class"] == {c: 60 for c in CLASSES}
    assert rep["missing_classes"] == []
    assert rep["excluded"] == {"lung_opacity": 7}
    assert rep["ignored_non_image_files"] == 2
    assert rep["skipped"] == [{"path": "/x/bad.png", "reason": "file is empty (0 bytes)"}]
    assert rep["split"]["counts"] == split.counts(ds) and rep["split"]["seed"] == 0
    assert rep["image_sizes"]["width"] == {"min": 256, "median": 288.0, "max": 320}
    assert rep["image_sizes"]["most_common"] == [{"size": "256x256", "images": 90}, {"size": "320x256", "images": 90}]
    assert rep["image_modes"] == {"L": 135, "RGB": 45}
    assert rep["masks"] == 5
    assert rep["patients"] == {
        "with_id": 30,
        "images_with_id": 90,
        "images_without_id": 90,
        "max_images_per_patient": 3,
    }
    # default columns: those of DEFAULT_CONFOUND_COLUMNS that the data has
    assert [c["column"] for c in rep["confounds"]] == ["population"]
    assert len(rep["warnings"]) == 1 and "population" in rep["warnings"][0]


def test_inspect_dataset_chosen_columns_and_missing_class():
    ds = _dataset()
    ds = CxrDataset(ds.root, ds.source, ds.classes + ("bacterial_pneumonia",), ds.records)
    infos = _infos(ds)
    rep = inspect_dataset(ds, infos, make_split(ds, None), columns=["site", "population"])
    assert [c["column"] for c in rep["confounds"]] == ["site", "population"]
    assert rep["missing_classes"] == ["bacterial_pneumonia"]
    assert rep["images_per_class"]["bacterial_pneumonia"] == 0


def test_inspect_unknown_column():
    ds = _dataset()
    with pytest.raises(ValueError, match="no metadata column.*sex.*available: population, uid, site"):
        inspect_dataset(ds, _infos(ds), make_split(ds, None), columns=["population", "sex"])


def test_inspect_empty_infos():
    ds = _dataset()
    rep = inspect_dataset(ds, [], make_split(ds, None), columns=[])
    assert rep["image_sizes"]["width"] == {} and rep["image_modes"] == {} and rep["confounds"] == []
