"""Several dataset roots read as one (``--data A B``): namespaced patients, parts, refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrkit.data.multi import load_data
from cxrkit.data.prepare import prepare
from cxrkit.data.sources import DatasetError, load_dataset


def _manifest(root: Path, rows: list[dict], make_image, seed0: int = 0) -> Path:
    """Images + manifest.csv (file,label,patient_id,view[,age]) under ``root``."""
    for i, row in enumerate(rows):
        make_image(root / row["file"], seed=seed0 + i, shape=(32, 32))
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    return root


def _two_roots(tmp_path, make_image):
    a = _manifest(
        tmp_path / "a",
        [{"file": f"covid/c{i}.png", "label": "covid", "patient_id": str(i % 3), "view": "AP"} for i in range(6)]
        + [{"file": f"normal/n{i}.png", "label": "normal", "patient_id": str(10 + i), "view": "PA"} for i in range(6)],
        make_image,
    )
    b = _manifest(
        tmp_path / "b",
        [
            {"file": f"normal/m{i}.png", "label": "normal", "patient_id": str(i % 3), "view": "AP", "age": "40"}
            for i in range(6)
        ]
        + [{"file": f"pneumonia/p{i}.png", "label": "pneumonia", "patient_id": "7", "age": "60"} for i in range(3)],
        make_image,
        seed0=100,
    )
    return a, b


def test_two_roots_are_one_dataset_with_patients_kept_apart(tmp_path, make_image):
    a, b = _two_roots(tmp_path, make_image)
    ds = load_data([a, b], "covid,normal")
    assert len(ds) == 18
    assert ds.class_counts() == {"covid": 6, "normal": 12}
    # patient "0" of a and patient "0" of b are two people
    ids = {r.patient_id for r in ds.records}
    assert "a/0" in ids and "b/0" in ids and "0" not in ids
    assert {r.metadata["dataset"] for r in ds.records} == {"a", "b"}
    assert {"view", "age", "dataset"} <= set(ds.metadata_columns)
    # each part records the fingerprint the root alone has
    alone = load_dataset(b, "covid,normal")
    part_b = next(p for p in ds.parts if p["name"] == "b")
    assert part_b["fingerprint"] == alone.fingerprint() and part_b["images"] == 6
    assert ds.excluded["pneumonia"] == 3  # not a chosen class: counted, not silently merged
    # paths relative to the common folder tell the datasets apart
    assert {ds.relpath(r).split("/")[0] for r in ds.records} == {"a", "b"}


def test_one_root_in_a_list_is_the_plain_dataset(tmp_path, make_image):
    a, _ = _two_roots(tmp_path, make_image)
    assert load_data([a], "covid,normal").parts == []
    assert load_data([a], "covid,normal").fingerprint() == load_dataset(a, "covid,normal").fingerprint()


def test_nested_roots_are_refused(tmp_path, make_image):
    a, _ = _two_roots(tmp_path, make_image)
    with pytest.raises(DatasetError, match="inside the other"):
        load_data([tmp_path / "a", a / "normal"], "covid,normal")


def test_a_file_listed_by_two_manifests_is_refused(tmp_path, make_image):
    a, _ = _two_roots(tmp_path, make_image)
    c = tmp_path / "c"
    c.mkdir()
    (c / "manifest.csv").write_text(f"file,label\n{a / 'normal' / 'n0.png'},normal\n")
    with pytest.raises(DatasetError, match="listed by two datasets"):
        load_data([a, c], "covid,normal", allow_outside_paths=True)


def test_a_root_without_the_classes_names_itself(tmp_path, make_image):
    a, _ = _two_roots(tmp_path, make_image)
    only_viral = tmp_path / "v"
    make_image(only_viral / "viral_pneumonia" / "x.png")
    with pytest.raises(DatasetError, match=r"v: none of the classes.*one of 2 datasets"):
        load_data([a, only_viral], "covid,normal")


def test_same_image_under_two_labels_in_two_datasets_is_skipped_and_counted(tmp_path, make_image):
    a, _ = _two_roots(tmp_path, make_image)
    b = tmp_path / "b2"
    (b / "covid").mkdir(parents=True)
    # the very film a/normal/n0.png, labelled covid in b2
    Image.open(a / "normal" / "n0.png").save(b / "covid" / "same.png")
    make_image(b / "normal" / "other.png", seed=999, shape=(32, 32))
    prep = prepare([a, b], "covid,normal", workers=1, cache_dir=tmp_path / "cache")
    names = {Path(r.path).name for r in prep.dataset.records}
    assert "n0.png" not in names and "same.png" not in names
    reasons = [s.reason for s in prep.dataset.skipped]
    assert sum("labelled covid and normal in different datasets" in r for r in reasons) == 2
    assert len(prep.infos) == len(prep.dataset)


def test_split_keeps_a_patient_of_each_dataset_together(tmp_path, make_image):
    a, b = _two_roots(tmp_path, make_image)
    prep = prepare([a, b], "covid,normal", workers=1, cache_dir=tmp_path / "cache", fractions=(0.5, 0.25, 0.25))
    where: dict[str, set[str]] = {}
    for r, s in zip(prep.dataset.records, prep.split.assignment):
        where.setdefault(r.patient_id, set()).add(s)
    assert all(len(v) == 1 for v in where.values())
    assert set(np.unique(prep.split.assignment)) <= {"train", "val", "test"}
