"""Several dataset roots read as one (``--data A B``): namespaced patients, parts, refusals."""

from __future__ import annotations

import csv
import re
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


def _textured_film(seed: int, shape=(160, 128)) -> Image.Image:
    """A synthetic film with detail at three scales (as real films have, unlike a smooth blur):
    re-encoding moves its hash by a few bits, as it does for real films."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape)
    for side, weight in ((8, 1.0), (24, 0.35), (64, 0.15)):
        coarse = Image.fromarray((rng.random((side, side)) * 255).astype(np.uint8))
        out += weight * np.asarray(coarse.resize((shape[1], shape[0]), Image.BICUBIC), float)
    return Image.fromarray(np.clip(out / 1.5, 0, 255).astype(np.uint8))


# how dataset B re-published A's films: JPEG at several qualities, resized, both
REENCODINGS = [
    ("jpg", {"quality": 70}, 1.0),
    ("jpg", {"quality": 80}, 1.0),
    ("jpg", {"quality": 90}, 1.0),
    ("jpg", {"quality": 95}, 1.0),
    ("png", {}, 0.5),
    ("png", {}, 0.75),
    ("jpg", {"quality": 85}, 2.0),
    ("jpg", {"quality": 75}, 0.5),
]


def test_reencoded_copies_under_swapped_labels_are_all_found(tmp_path):
    """B holds A's 40 covid and normal films re-encoded (JPEG 70-95, resized) with the labels
    swapped: every one of the 40 pairs is left out and listed; B's own films are kept."""
    from cxrkit.data.duplicates import phash
    from cxrkit.data.images import read_image
    from cxrkit.data.inspect import inspect_dataset
    from cxrkit.data.multi import label_conflict_count

    a, b = tmp_path / "a", tmp_path / "b"
    swapped = {"covid": "normal", "normal": "covid"}
    exact = 0
    for i in range(40):
        label = "covid" if i < 20 else "normal"
        film = _textured_film(i)
        (a / label).mkdir(parents=True, exist_ok=True)
        film.save(a / label / f"f{i}.png")
        fmt, save, scale = REENCODINGS[i % len(REENCODINGS)]
        copy = film.resize((round(film.width * scale), round(film.height * scale)), Image.BICUBIC)
        (b / swapped[label]).mkdir(parents=True, exist_ok=True)
        copy.save(b / swapped[label] / f"copy{i}.{fmt}", **save)
        exact += phash(read_image(a / label / f"f{i}.png")) == phash(read_image(b / swapped[label] / f"copy{i}.{fmt}"))
    for i in range(6):  # B's own films, distinct from every film of A
        _textured_film(1000 + i).save(b / ("covid" if i < 3 else "normal") / f"own{i}.png")
    assert exact < 40  # some copies keep the exact hash, not all: equal hashes alone would miss some

    prep = prepare([a, b], "covid,normal", workers=1, cache_dir=tmp_path / "cache")
    assert sorted(Path(r.path).name for r in prep.dataset.records) == [f"own{i}.png" for i in range(6)]
    conflicts = [s for s in prep.dataset.skipped if "labelled covid and normal in different datasets" in s.reason]
    assert len(conflicts) == 80 == label_conflict_count(prep.dataset)
    copy0 = next(s for s in conflicts if Path(s.path).name == "copy0.jpg")
    assert "b says normal, a says covid" in copy0.reason and "f0.png" in copy0.reason
    report = inspect_dataset(prep.dataset, prep.infos, prep.split)
    assert report["label_conflicts"] == 80 and report["skipped_count"] == 80


def test_cxr_data_inspect_shows_the_films_under_two_labels(tmp_path, capsys, monkeypatch):
    from cxrkit.cli.main import main

    monkeypatch.setenv("COLUMNS", "200")
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(8):
        (a / "covid").mkdir(parents=True, exist_ok=True)
        (b / "normal").mkdir(parents=True, exist_ok=True)
        _textured_film(i).save(a / "covid" / f"f{i}.png")
        _textured_film(i).save(b / "normal" / f"copy{i}.jpg", quality=90)
        _textured_film(100 + i).save(a / "covid" / f"g{i}.png")
        _textured_film(200 + i).save(b / "normal" / f"h{i}.png")
    main(
        ["data", "inspect", str(a), str(b), "--classes", "covid,normal", "--workers", "1", "--out", str(tmp_path / "o")]
    )
    out = capsys.readouterr().out
    assert re.search(r"films under two labels in two datasets, left out\W+16\b", out), out
    assert re.search(r"unreadable files skipped\W+0\b", out), out
    assert "copy0.jpg: the same film is labelled covid and normal" in out.replace("\n", "")


def test_distinct_films_under_different_labels_are_not_matched(tmp_path):
    """Different films (synthetic, as far apart as distinct real films) stay, whatever their labels."""
    for root, seed0 in ((tmp_path / "a", 0), (tmp_path / "b", 500)):
        for label in ("covid", "normal"):
            (root / label).mkdir(parents=True)
        for i in range(30):
            _textured_film(seed0 + i).save(root / ("covid" if i % 2 else "normal") / f"x{i}.png")
    a, b = tmp_path / "a", tmp_path / "b"
    prep = prepare([a, b], "covid,normal", workers=1, cache_dir=tmp_path / "cache")
    assert len(prep.dataset) == 60 and not prep.dataset.skipped
