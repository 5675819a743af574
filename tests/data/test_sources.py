"""sources: class folders (plain, Kaggle v1/v4, split folders), CSV manifests, ieee8023."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cxrkit.data.sources import DatasetError, from_folders, ieee8023_label, load_dataset


def _populate(root: Path, make_image, layout: dict[str, list[str]]) -> None:
    """Write one small synthetic PNG/JPEG per listed file, ``{"covid": ["a.png", ...]}``."""
    seed = 0
    for folder, names in layout.items():
        for name in names:
            make_image(root / folder / name, seed=seed, shape=(16, 16))
            seed += 1


def _relpaths(ds) -> list[str]:
    return [ds.relpath(r) for r in ds.records]


# ----------------------------------------------------------------------------- class folders
def test_plain_class_folders(tmp_path, make_image):
    root = tmp_path / "data"
    _populate(
        root,
        make_image,
        {"covid": ["c1.png", "c2.jpg"], "normal": ["n1.png", "n2.png", "n3.bmp"], "viral_pneumonia": ["v1.png"]},
    )
    (root / "covid" / "notes.txt").write_text("not an image")
    (root / "normal" / ".DS_Store").write_bytes(b"\0\0")
    ds = load_dataset(root)
    assert ds.source == "folders"
    assert ds.root == root.resolve()
    assert ds.classes == ("covid", "viral_pneumonia", "normal")
    assert ds.class_counts() == {"covid": 2, "viral_pneumonia": 1, "normal": 3}
    assert ds.ignored_files == 1  # notes.txt; hidden files are not data at all
    assert ds.skipped == [] and not ds.excluded
    assert _relpaths(ds) == sorted(_relpaths(ds))  # records sorted by path
    assert [ds.classes[i] for i in ds.labels] == [r.label for r in ds.records]
    assert all(r.patient_id is None and r.mask_path is None and r.metadata == {} for r in ds.records)


def test_nested_subfolders_inside_class_are_searched(tmp_path, make_image):
    root = tmp_path / "data"
    _populate(root, make_image, {"covid/site_a": ["a.png"], "covid/site_b/x": ["b.png"], "normal": ["n.png"]})
    ds = load_dataset(root, "covid,normal")
    assert ds.class_counts() == {"covid": 2, "normal": 1}


def test_kaggle_v1_layout_inside_wrapper(tmp_path, make_image):
    root = tmp_path / "download"
    wrapper = root / "COVID-19 Radiography Database"
    _populate(
        wrapper,
        make_image,
        {
            "COVID-19": ["COVID-19 (1).png", "COVID-19 (2).png"],
            "NORMAL": ["NORMAL (1).png", "NORMAL (2).png", "NORMAL (3).png"],
            "Viral Pneumonia": ["Viral Pneumonia (1).png"],
        },
    )
    (root / "COVID-19.metadata.xlsx").write_bytes(b"PK\x03\x04 not really")
    (wrapper / "NORMAL.metadata.xlsx").write_bytes(b"PK\x03\x04 not really")
    ds = load_dataset(root)
    assert ds.class_counts() == {"covid": 2, "viral_pneumonia": 1, "normal": 3}
    assert ds.root == root.resolve()
    assert _relpaths(ds)[0] == "COVID-19 Radiography Database/COVID-19/COVID-19 (1).png"
    assert not ds.excluded


def _kaggle_v4(root: Path, make_image) -> Path:
    base = root / "COVID-19_Radiography_Dataset"
    layout = {
        "COVID": ["COVID-1.png", "COVID-2.png"],
        "Normal": ["Normal-1.png", "Normal-2.png"],
        "Viral Pneumonia": ["Viral Pneumonia-1.png"],
        "Lung_Opacity": ["Lung_Opacity-1.png", "Lung_Opacity-2.png", "Lung_Opacity-3.png"],
    }
    for cls, names in layout.items():
        _populate(base / cls, make_image, {"images": names, "masks": names})
    (base / "COVID.metadata.xlsx").write_bytes(b"PK")
    (base / "README.md.txt").write_text("readme")
    return base


def test_kaggle_v4_images_and_masks(tmp_path, make_image):
    base = _kaggle_v4(tmp_path / "v4", make_image)
    ds = load_dataset(tmp_path / "v4")
    assert ds.class_counts() == {"covid": 2, "viral_pneumonia": 1, "normal": 2}  # masks are not images
    assert ds.excluded == Counter({"lung_opacity": 3})
    for rec in ds.records:
        assert rec.path.parent.name == "images"
        assert rec.mask_path is not None
        assert rec.mask_path == rec.path.parent.parent / "masks" / rec.path.name
        assert rec.mask_path.is_file()
    assert ds.records[0].path == (base / "COVID" / "images" / "COVID-1.png").resolve()
    assert ds.ignored_files == 0


def test_kaggle_v4_all_classes(tmp_path, make_image):
    _kaggle_v4(tmp_path / "v4", make_image)
    ds = load_dataset(tmp_path / "v4", classes="all")
    assert ds.classes == ("covid", "lung_opacity", "normal", "viral_pneumonia")
    assert ds.class_counts() == {"covid": 2, "lung_opacity": 3, "normal": 2, "viral_pneumonia": 1}
    assert not ds.excluded
    assert ds.labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 3]


def test_mask_missing_for_some_images(tmp_path, make_image):
    root = tmp_path / "d"
    _populate(root / "covid", make_image, {"images": ["a.png", "b.png"], "masks": ["a.png"]})
    _populate(root, make_image, {"normal": ["n.png"]})
    ds = load_dataset(root, "covid,normal")
    masks = {r.path.name: r.mask_path for r in ds.records}
    assert masks["a.png"] is not None and masks["b.png"] is None and masks["n.png"] is None


def test_split_folders_and_kermany_patient_ids(tmp_path, make_image):
    root = tmp_path / "chest_xray"
    _populate(
        root,
        make_image,
        {
            "train/NORMAL": ["IM-0115-0001.jpeg", "NORMAL2-IM-0001.jpeg"],
            "train/viral": ["person1_virus_6.jpeg", "person1_virus_7.jpeg", "person22_virus_1.jpeg"],
            "test/NORMAL": ["IM-0001-0001.jpeg"],
            "test/viral": ["person100_virus_2.jpeg"],
            "val/NORMAL": ["IM-0002-0001.jpeg"],
        },
    )
    ds = load_dataset(root, "viral_pneumonia,normal")
    assert ds.class_counts() == {"viral_pneumonia": 4, "normal": 4}
    by_name = {r.path.name: r for r in ds.records}
    assert by_name["person1_virus_6.jpeg"].patient_id == "kermany-1"
    assert by_name["person1_virus_7.jpeg"].patient_id == "kermany-1"
    assert by_name["person22_virus_1.jpeg"].patient_id == "kermany-22"
    assert by_name["person100_virus_2.jpeg"].patient_id == "kermany-100"
    assert by_name["IM-0115-0001.jpeg"].patient_id is None
    assert by_name["person1_virus_6.jpeg"].metadata == {"source_split": "train"}
    assert by_name["IM-0001-0001.jpeg"].metadata == {"source_split": "test"}
    assert by_name["IM-0002-0001.jpeg"].metadata == {"source_split": "val"}
    assert ds.metadata_columns == ["source_split"]


def test_kermany_pneumonia_folder_needs_classes(tmp_path, make_image):
    root = tmp_path / "chest_xray"
    _populate(root, make_image, {"train/NORMAL": ["a.jpeg"], "train/PNEUMONIA": ["person3_bacteria_1.jpeg"]})
    ds = load_dataset(root)  # default classes: pneumonia is neither viral nor covid
    assert ds.class_counts() == {"covid": 0, "viral_pneumonia": 0, "normal": 1}
    assert ds.excluded == Counter({"pneumonia": 1})
    assert load_dataset(root, "all").classes == ("normal", "pneumonia")


def test_non_image_and_suffixless_dicom(tmp_path, make_image, make_dicom):
    root = tmp_path / "d"
    _populate(root, make_image, {"covid": ["a.png"], "normal": ["b.png"]})
    make_dicom(root / "covid" / "IM0001", np.zeros((4, 4), np.uint16))  # no suffix: sniffed
    (root / "normal" / "README").write_text("x" * 200)  # no suffix, not DICOM
    (root / "normal" / "scores.xlsx").write_bytes(b"PK")
    (root / "covid" / "scan.dcm.bak").write_bytes(b"\0" * 200)
    ds = load_dataset(root, "covid,normal")
    assert sorted(r.path.name for r in ds.records) == ["IM0001", "a.png", "b.png"]
    assert ds.ignored_files == 3


def test_hidden_folders_ignored(tmp_path, make_image):
    root = tmp_path / "d"
    _populate(
        root, make_image, {"covid": ["a.png"], "normal": ["b.png"], ".thumbnails": ["t.png"], "covid/.cache": ["c.png"]}
    )
    ds = load_dataset(root, "all")
    assert ds.classes == ("covid", "normal")
    assert len(ds) == 2


def test_empty_folder_raises(tmp_path):
    (tmp_path / "empty" / "covid").mkdir(parents=True)
    (tmp_path / "empty" / "normal").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset(tmp_path / "empty")


# ----------------------------------------------------------------------------- class selection
def test_class_selection_order_respected(tmp_path, make_image):
    root = tmp_path / "d"
    _populate(root, make_image, {"covid": ["c.png"], "normal": ["n1.png", "n2.png"], "viral_pneumonia": ["v.png"]})
    ds = load_dataset(root, classes="normal,COVID-19")
    assert ds.classes == ("normal", "covid")
    assert ds.class_counts() == {"normal": 2, "covid": 1}
    assert ds.excluded == Counter({"viral_pneumonia": 1})
    assert dict(zip((r.path.name for r in ds.records), ds.labels.tolist())) == {"c.png": 1, "n1.png": 0, "n2.png": 0}
    assert load_dataset(root, ["viral pneumonia", "normal", "covid"]).classes == ("viral_pneumonia", "normal", "covid")


def test_no_selected_class_found_lists_found_classes(tmp_path, make_image):
    root = tmp_path / "d"
    _populate(root, make_image, {"PNEUMONIA": ["p1.png", "p2.png"], "Lung_Opacity": ["o.png"]})
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    msg = str(err.value)
    assert "covid, viral_pneumonia, normal" in msg
    assert "lung_opacity (1)" in msg and "pneumonia (2)" in msg
    assert "--classes" in msg


def test_all_with_one_class_raises(tmp_path, make_image):
    root = tmp_path / "d"
    _populate(root, make_image, {"covid": ["a.png"], "other_stuff": []})
    (root / "other_stuff").mkdir(exist_ok=True)
    with pytest.raises(DatasetError, match="at least two classes"):
        load_dataset(root, "all")


def test_bad_classes_spec_raises_value_error(tmp_path, make_image):
    root = tmp_path / "d"
    _populate(root, make_image, {"covid": ["a.png"], "normal": ["b.png"]})
    with pytest.raises(ValueError, match="named twice"):
        load_dataset(root, "covid,covid19")


def test_load_dataset_bad_paths(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="expected a folder of class folders or a CSV"):
        load_dataset(tmp_path / "x.png")


# ----------------------------------------------------------------------------- manifest
def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_manifest_reads_rows_metadata_and_skips_bad_rows(tmp_path, make_image):
    root = tmp_path / "m"
    _populate(root, make_image, {"imgs/a": ["1.png", "2.png"], "imgs/b": ["3.png", "4.png", "5.png"]})
    header = ["file", "label", "patient_id", "population", "subsource"]
    csv_path = _write_csv(
        root / "manifest.csv",
        header,
        [
            ["imgs/a/1.png", "COVID-19", "p1", "adult", "ieee"],
            ["imgs/a/2.png", "covid", "p1", "adult", "ieee"],
            ["imgs/b/3.png", "Normal", "", "pediatric", "kermany"],
            ["imgs/b/4.png", "viral", "p9", "pediatric", "kermany"],
            ["imgs/b/missing.png", "normal", "p3", "adult", "x"],  # not on disk
            ["imgs/b/3.png", "normal", "", "pediatric", "kermany"],  # listed twice
            ["imgs/b/5.png", "", "p4", "adult", "x"],  # empty label
            ["", "normal", "", "", ""],  # empty file cell
        ],
    )
    ds = load_dataset(csv_path)
    assert ds.source == "manifest" and ds.root == root.resolve()
    assert ds.class_counts() == {"covid": 2, "viral_pneumonia": 1, "normal": 1}
    assert _relpaths(ds) == ["imgs/a/1.png", "imgs/a/2.png", "imgs/b/3.png", "imgs/b/4.png"]
    assert ds.patient_ids == ["p1", "p1", None, "p9"]
    assert ds.records[0].metadata == {"population": "adult", "subsource": "ieee"}
    assert ds.metadata_columns == ["population", "subsource"]
    reasons = {Path(s.path).name if s.path.endswith(".png") else s.path: s.reason for s in ds.skipped}
    assert len(ds.skipped) == 4
    assert "not found" in reasons["missing.png"] and "line 6" in reasons["missing.png"]
    assert "listed twice" in reasons["3.png"] and "line 7" in reasons["3.png"]
    assert "empty label" in reasons["5.png"] and "line 8" in reasons["5.png"]
    assert reasons["manifest.csv line 9"] == "empty 'file' cell"


def test_folder_with_manifest_is_read_through_it(tmp_path, make_image):
    root = tmp_path / "m"
    _populate(root, make_image, {"covid": ["a.png", "unlisted.png"], "normal": ["b.png"]})
    _write_csv(
        root / "manifest.csv",
        ["file", "label", "note"],
        [["covid/a.png", "covid", "x"], ["normal/b.png", "normal", ""]],
    )
    ds = load_dataset(root, "covid,normal")
    assert ds.source == "manifest"
    assert _relpaths(ds) == ["covid/a.png", "normal/b.png"]  # the manifest decides, not the folders
    assert [r.metadata for r in ds.records] == [{"note": "x"}, {"note": ""}]


def test_manifest_mask_column_and_bom(tmp_path, make_image):
    root = tmp_path / "m"
    _populate(root, make_image, {"i": ["a.png", "b.png"], "k": ["a.png"]})
    text = "file,label,mask\ni/a.png,covid,k/a.png\ni/b.png,normal,\n"
    (root / "list.csv").write_text(text, encoding="utf-8-sig")  # Excel writes a BOM
    ds = load_dataset(root / "list.csv", "covid,normal")
    assert [r.mask_path for r in ds.records] == [(root / "k" / "a.png").resolve(), None]
    assert ds.metadata_columns == []


def test_manifest_header_with_spaces(tmp_path, make_image):
    root = tmp_path / "m"
    _populate(root, make_image, {"i": ["a.png", "b.png"]})
    (root / "manifest.csv").write_text("file, label, patient_id, site\ni/a.png, covid, p1, x\ni/b.png, normal, , y\n")
    ds = load_dataset(root, "covid,normal")
    assert ds.class_counts() == {"covid": 1, "normal": 1}
    assert ds.patient_ids == ["p1", None]
    assert [r.metadata for r in ds.records] == [{"site": "x"}, {"site": "y"}]
    assert not ds.skipped


def test_manifest_relative_to_csv_folder_not_cwd(tmp_path, make_image, monkeypatch):
    root = tmp_path / "m"
    _populate(root, make_image, {"i": ["a.png", "b.png"]})
    _write_csv(root / "sub" / "list.csv", ["file", "label"], [["../i/a.png", "covid"], ["../i/b.png", "normal"]])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="outside the dataset folder .*--allow-outside-paths"):
        load_dataset("m/sub/list.csv", "covid,normal")  # ../ leaves the manifest's folder: refused by default
    ds = load_dataset("m/sub/list.csv", "covid,normal", allow_outside_paths=True)
    assert [r.path for r in ds.records] == [(root / "i" / "a.png").resolve(), (root / "i" / "b.png").resolve()]
    assert ds.root == (root / "sub").resolve()


@pytest.mark.parametrize("header", [["path", "class"], ["file", "diagnosis"], ["image", "label"]])
def test_manifest_bad_header_names_columns(tmp_path, header):
    csv_path = _write_csv(tmp_path / "manifest.csv", header, [["a.png", "covid"]])
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert "lacks column" in msg
    for col in {"file", "label"} - set(header):
        assert col in msg.split("found")[0]
    assert ", ".join(header) in msg  # what was found
    assert str(csv_path) in msg


def test_empty_manifest_raises(tmp_path):
    (tmp_path / "manifest.csv").write_text("")
    with pytest.raises(DatasetError, match="no header"):
        load_dataset(tmp_path)


# ----------------------------------------------------------------------------- ieee8023
IEEE_HEADER = [
    "patientid",
    "offset",
    "sex",
    "age",
    "finding",
    "RT_PCR_positive",
    "survival",
    "view",
    "modality",
    "date",
    "location",
    "folder",
    "filename",
    "doi",
    "url",
    "license",
    "clinical_notes",
    "other_notes",
]


def _ieee_row(pid, finding, view, modality, filename, sex="M", age="60", folder="images"):
    row = dict.fromkeys(IEEE_HEADER, "")
    row.update(
        patientid=pid, finding=finding, view=view, modality=modality, filename=filename, sex=sex, age=age, folder=folder
    )
    return [row[h] for h in IEEE_HEADER]


@pytest.fixture
def ieee_root(tmp_path, make_image):
    root = tmp_path / "covid-chestxray-dataset"
    rows = [
        _ieee_row("1", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "c1.png", sex="F", age="54"),
        _ieee_row("1", "Pneumonia/Viral/COVID-19", "AP Supine", "X-ray", "c2.jpg"),
        _ieee_row("2", "COVID-19", "AP", "X-ray", "c3.png"),  # old flat style
        _ieee_row("3", "Pneumonia/Viral/SARS", "AP", "X-ray", "s1.png"),
        _ieee_row("4", "Pneumonia/Bacterial/Streptococcus", "PA", "X-ray", "b1.png"),
        _ieee_row("5", "No Finding", "PA", "X-ray", "n1.png"),
        _ieee_row("6", "todo", "PA", "X-ray", "t1.png"),
        _ieee_row("7", "Pneumonia/Viral/COVID-19", "L", "X-ray", "l1.png"),  # lateral
        _ieee_row("8", "Pneumonia/Viral/COVID-19", "Axial", "CT", "ct1.png"),  # CT slice
        _ieee_row("9", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "gone.png"),  # file missing
        _ieee_row("10", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "v1.png", folder="volumes"),
    ]
    for i, r in enumerate(rows):
        folder, name = r[IEEE_HEADER.index("folder")], r[IEEE_HEADER.index("filename")]
        if name != "gone.png":
            make_image(root / folder / name, seed=i, shape=(16, 16))
    _write_csv(root / "metadata.csv", IEEE_HEADER, rows)
    return root


def test_ieee8023_frontal_xrays_only(ieee_root):
    ds = load_dataset(ieee_root)
    assert ds.source == "ieee8023"
    assert ds.class_counts() == {"covid": 4, "viral_pneumonia": 1, "normal": 1}
    assert ds.excluded == Counter({"bacterial_pneumonia": 1, "other": 1, "view:L": 1, "modality:CT": 1})
    assert len(ds.skipped) == 1
    assert ds.skipped[0].path.endswith("gone.png") and "metadata.csv line 11" in ds.skipped[0].reason
    by_name = {r.path.name: r for r in ds.records}
    assert by_name["c1.png"].patient_id == by_name["c2.jpg"].patient_id == "ieee8023-1"
    assert by_name["v1.png"].path.parent.name == "volumes"
    meta = by_name["c1.png"].metadata
    assert meta["sex"] == "F" and meta["age"] == "54" and meta["view"] == "PA"
    assert meta["finding"] == "Pneumonia/Viral/COVID-19"
    assert not {"patientid", "filename", "folder"} & set(meta)
    assert by_name["c2.jpg"].metadata["view"] == "AP Supine"


def test_ieee8023_all_classes(ieee_root):
    ds = load_dataset(ieee_root / "metadata.csv", "all")
    assert ds.classes == ("bacterial_pneumonia", "covid", "normal", "other", "viral_pneumonia")
    assert ds.excluded == Counter({"view:L": 1, "modality:CT": 1})


@pytest.mark.parametrize(
    "finding,label",
    [
        ("Pneumonia/Viral/COVID-19", "covid"),
        ("COVID-19, ARDS", "covid"),
        ("Pneumonia/Viral/SARS", "viral_pneumonia"),
        ("Pneumonia/Viral/MERS-CoV", "viral_pneumonia"),
        ("Pneumonia/Viral/Influenza", "viral_pneumonia"),
        ("Pneumonia/Viral/Varicella", "viral_pneumonia"),
        ("Pneumonia/Bacterial/Streptococcus", "bacterial_pneumonia"),
        ("Pneumonia/Bacterial/Klebsiella", "bacterial_pneumonia"),
        ("Pneumonia/Fungal/Pneumocystis", "fungal_pneumonia"),
        ("Tuberculosis", "tuberculosis"),
        ("No Finding", "normal"),
        ("todo", "other"),
        ("Pneumonia", "other"),
    ],
)
def test_ieee8023_label(finding, label):
    assert ieee8023_label(finding) == label


def test_from_folders_direct_call_matches_load_dataset(tmp_path, make_image):
    root = tmp_path / "d"
    _populate(root, make_image, {"covid": ["a.png"], "normal": ["b.png"]})
    a, b = from_folders(root, "covid,normal"), load_dataset(root, "covid,normal")
    assert a.records == b.records and a.classes == b.classes


def test_manifest_with_every_file_missing_says_why(tmp_path):
    _write_csv(tmp_path / "manifest.csv", ["file", "label"], [["wrong/a.png", "covid"], ["wrong/b.png", "normal"]])
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert "2 listed file(s) were skipped" in msg
    assert "wrong/a.png" in msg and "not found" in msg


def test_single_split_folder_keeps_source_split(tmp_path, make_image):
    root = tmp_path / "only_train"
    _populate(root, make_image, {"train/covid": ["a.png"], "train/normal": ["b.png"]})
    ds = load_dataset(root, "covid,normal")
    assert ds.class_counts() == {"covid": 1, "normal": 1}
    assert [r.metadata for r in ds.records] == [{"source_split": "train"}] * 2


def test_macosx_folder_from_zip_is_ignored(tmp_path, make_image):
    root = tmp_path / "unzipped"
    _populate(root / "COVID-19 Radiography Database", make_image, {"COVID-19": ["c.png"], "NORMAL": ["n.png"]})
    fork = root / "__MACOSX" / "COVID-19 Radiography Database" / "COVID-19" / "._c.png"
    fork.parent.mkdir(parents=True)
    fork.write_bytes(b"\0\5\26\7" + b"\0" * 60)  # AppleDouble resource fork
    ds = load_dataset(root, "all")
    assert ds.classes == ("covid", "normal")
    assert [ds.relpath(r) for r in ds.records] == [
        "COVID-19 Radiography Database/COVID-19/c.png",
        "COVID-19 Radiography Database/NORMAL/n.png",
    ]


# ----------------------------------------------------------------------------- hardening (issue 12)
def test_single_class_folder_is_a_class_not_a_zip_wrapper(tmp_path, make_image):
    root = tmp_path / "only_covid"
    _populate(root, make_image, {"covid/site_a": ["a.png"], "covid/site_b": ["b.png"]})
    ds = load_dataset(root)
    assert ds.class_counts() == {"covid": 2, "viral_pneumonia": 0, "normal": 0}
    with pytest.raises(DatasetError, match="need at least two classes, found covid \\(2\\)"):
        load_dataset(root, "all")
    unknown = tmp_path / "only_effusion"
    _populate(unknown, make_image, {"effusion": ["a.png"]})  # images right inside: a class, whatever its name
    with pytest.raises(DatasetError, match="the data has effusion \\(1\\)"):
        load_dataset(unknown)


def test_manifest_outside_paths_skipped_unless_allowed(tmp_path, make_image):
    root = tmp_path / "m"
    _populate(root, make_image, {"i": ["a.png", "b.png"]})
    outside = make_image(tmp_path / "other" / "c.png", seed=7, shape=(16, 16))
    _write_csv(
        root / "manifest.csv",
        ["file", "label", "mask"],
        [
            ["i/a.png", "covid", "../other/c.png"],
            ["i/b.png", "normal", ""],
            ["../other/c.png", "covid", ""],
            [str(outside), "normal", ""],
            ["i/../../other/c.png", "covid", ""],
        ],
    )
    ds = load_dataset(root, "covid,normal")
    assert _relpaths(ds) == ["i/a.png", "i/b.png"] and ds.records[0].mask_path is None
    assert len(ds.skipped) == 3
    assert all("outside the dataset folder" in s.reason and "--allow-outside-paths" in s.reason for s in ds.skipped)
    ds = load_dataset(root, "covid,normal", allow_outside_paths=True)
    assert len(ds) == 3 and ds.records[0].mask_path == outside.resolve()  # listed twice: third is a duplicate
    assert [s.reason.split(" (")[0] for s in ds.skipped] == ["listed twice in the manifest"] * 2


def test_ieee8023_folder_cannot_leave_the_dataset(tmp_path, make_image):
    make_image(tmp_path / "secret" / "x.png", shape=(16, 16))
    root = tmp_path / "ieee"
    make_image(root / "images" / "ok.png", seed=1, shape=(16, 16))
    rows = [
        _ieee_row("1", "COVID-19", "PA", "X-ray", "ok.png"),
        _ieee_row("2", "No Finding", "PA", "X-ray", "x.png", folder="../secret"),
    ]
    _write_csv(root / "metadata.csv", IEEE_HEADER, rows)
    ds = load_dataset(root, "covid,normal")
    assert [r.path.name for r in ds.records] == ["ok.png"]
    assert "outside the dataset folder" in ds.skipped[0].reason


def test_latin1_manifest_is_read_and_said(tmp_path, make_image):
    root = tmp_path / "m"
    _populate(root, make_image, {"i": ["a.png", "b.png"]})
    (root / "manifest.csv").write_bytes(
        "file,label,site\ni/a.png,covid,São Paulo\ni/b.png,normal,Köln\n".encode("latin-1")
    )
    ds = load_dataset(root, "covid,normal")
    assert [r.metadata["site"] for r in ds.records] == ["São Paulo", "Köln"]
    assert len(ds.notes) == 1 and "manifest.csv is not valid UTF-8" in ds.notes[0] and "Latin-1" in ds.notes[0]
    (root / "manifest.csv").write_text("file,label\ni/a.png,covid\n", encoding="utf-8-sig")
    assert load_dataset(root, "covid,normal").notes == []


@pytest.mark.parametrize(
    "content,match",
    [
        ("file,label,patient_id\n", "header \\(file, label, patient_id\\) but no rows"),
        (b"file,label\n\0\0\xff\xfe binary", "not a text CSV"),
    ],
)
def test_header_only_or_binary_manifest_says_so(tmp_path, content, match):
    path = tmp_path / "manifest.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DatasetError, match=match) as err:
        load_dataset(tmp_path)
    assert str(path) in str(err.value)


def test_manifest_fifo_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "manifest.csv")
    with pytest.raises(DatasetError, match="manifest.csv: cannot read the manifest: not a regular file: a FIFO"):
        load_dataset(tmp_path)


def test_manifest_rows_pointing_at_fifo_or_dangling_link_are_skipped(tmp_path, make_image):
    _populate(tmp_path, make_image, {"i": ["a.png", "b.png"]})
    os.mkfifo(tmp_path / "i" / "p.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "i" / "d.png")
    _write_csv(
        tmp_path / "manifest.csv",
        ["file", "label"],
        [["i/a.png", "covid"], ["i/b.png", "normal"], ["i/p.png", "covid"], ["i/d.png", "normal"]],
    )
    ds = load_dataset(tmp_path, "covid,normal")
    reasons = {Path(s.path).name: s.reason for s in ds.skipped}
    assert len(ds) == 2 and "FIFO" in reasons["p.png"] and "not found" in reasons["gone.png"]


def test_registered_source_is_tried_first(tmp_path, make_image):
    from cxrkit.data import sources

    class OneFile(sources.Source):
        name = "onefile"

        @classmethod
        def detect(cls, path):
            return (path / "LIST").is_file()

        def records(self, path):
            return sources.Found(path, [sources.Record(path / n, "covid") for n in (path / "LIST").read_text().split()])

    _populate(tmp_path, make_image, {"covid": ["a.png"], "normal": ["b.png"]})
    (tmp_path / "LIST").write_text("covid/a.png")
    before = list(sources.SOURCES)
    try:
        sources.register_source(OneFile)
        ds = load_dataset(tmp_path, "covid,normal")
        assert ds.source == "onefile" and _relpaths(ds) == ["covid/a.png"]
    finally:
        sources.SOURCES[:] = before
    assert load_dataset(tmp_path, "covid,normal").source == "folders"
    assert [s.name for s in sources.SOURCES] == ["ieee8023", "manifest", "folders"]


def test_fingerprint_tolerates_vanished_files(tmp_path, make_image):
    import hashlib

    _populate(tmp_path, make_image, {"covid": ["a.png", "b.png"], "normal": ["c.png"]})
    ds = load_dataset(tmp_path, "covid,normal")
    h = hashlib.sha256()  # the formula of the run card's data fingerprint, spelled out
    for line in sorted(f"{ds.relpath(r)}\0{r.label}\0{r.path.stat().st_size}" for r in ds.records):
        h.update(line.encode() + b"\n")
    assert ds.fingerprint() == h.hexdigest()[:16]
    (tmp_path / "covid" / "b.png").unlink()
    changed = ds.fingerprint()
    assert changed != h.hexdigest()[:16] and len(changed) == 16
