"""Issue 29 class 1: training never drops a file or trains a tiny class without saying so."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from cxrkit.cli.main import main
from cxrkit.training.left_out import MIN_CLASS_IMAGES, class_warnings

pytestmark = pytest.mark.timeout(600)


def _broken_files(root) -> dict[str, str]:
    """Five kinds of file a scan must skip, by name -> a word its reason contains."""
    good = (root / "covid" / "covid_000.png").read_bytes()
    (root / "covid" / "garbage.png").write_bytes(b"not an image at all " * 8)
    (root / "covid" / "truncated.png").write_bytes(good[: len(good) // 2])
    os.symlink(root / "nowhere.png", root / "normal" / "dangling.png")
    nan = np.full((32, 32), 0.5, np.float32)
    nan[3, 3] = np.nan
    Image.fromarray(nan, mode="F").save(root / "normal" / "nan.tiff")
    os.mkfifo(root / "normal" / "fifo.png")
    return {
        "garbage.png": "recognise",
        "truncated.png": "truncated",
        "dangling.png": "dangling",
        "nan.tiff": "NaN",
        "fifo.png": "FIFO",
    }


def _train_args(data, out, cache):
    return ["train", "--data", str(data), "--out", str(out), "--model", "resdense_tiny", "--pretrained", "none"] + [
        "--epochs", "1", "--input-size", "32", "--workers", "1", "--cache-dir", str(cache)
    ]  # fmt: skip


def _skipped_csv(run) -> dict[str, str]:
    with open(run / "skipped.csv", newline="", encoding="utf-8") as fh:
        return {os.path.basename(r["path"]): r["reason"] for r in csv.DictReader(fh)}


def test_training_lists_every_skipped_file_on_screen_in_skipped_csv_and_in_the_card(blob_writer, tmp_path, capsys):
    data = blob_writer(tmp_path / "data", per_class=12, size=32)
    expected = _broken_files(data)
    run = tmp_path / "run"
    main(_train_args(data, run, tmp_path / "cache"))
    out = " ".join(capsys.readouterr().out.split())
    assert f"{len(expected)} file(s) left out of training" in out and str(run / "skipped.csv") in out
    for name in expected:
        assert f"skipped {data}" in out and name in out, name
    assert "caching 36 images at 32 px (5 skipped" in out
    listed = _skipped_csv(run)
    assert set(listed) == set(expected)
    for name, word in expected.items():
        assert word in listed[name], (name, listed[name])
    card = json.loads((run / "model_card.json").read_text())
    assert card["data"]["skipped_count"] == len(expected) and card["data"]["skipped_file"] == "skipped.csv"
    assert card["data"]["images"] == 36


def test_manifest_rows_outside_the_root_are_skipped_listed_and_counted(blob_writer, tmp_path, capsys):
    data = blob_writer(tmp_path / "data", per_class=12, size=32)
    shutil.copy(data / "covid" / "covid_000.png", tmp_path / "outside.png")
    rows = [f"{p.relative_to(data)},{p.parent.name}" for p in sorted(data.glob("*/*.png"))]
    (data / "manifest.csv").write_text(
        "file,label\n" + "\n".join([*rows, "../outside.png,covid", "/etc/hostname,normal"]) + "\n"
    )
    run = tmp_path / "run"
    main(_train_args(data / "manifest.csv", run, tmp_path / "cache"))
    assert "2 file(s) left out of training" in " ".join(capsys.readouterr().out.split())
    listed = _skipped_csv(run)
    assert set(listed) == {"outside.png", "hostname"} and all(
        "outside the dataset folder" in r for r in listed.values()
    )
    assert json.loads((run / "model_card.json").read_text())["data"]["skipped_count"] == 2


def test_a_class_with_one_image_warns_at_training_time_and_in_the_card(blob_writer, tmp_path, capsys):
    data = blob_writer(tmp_path / "data", per_class=12, size=32)
    for extra in sorted((data / "viral_pneumonia").iterdir())[1:]:
        extra.unlink()
    run = tmp_path / "run"
    main(_train_args(data, run, tmp_path / "cache"))
    out = " ".join(capsys.readouterr().out.split())
    assert "warning: class viral_pneumonia has 1 image(s) (train/val/test 1/0/0)" in out
    card = json.loads((run / "model_card.json").read_text())
    assert card["data"]["skipped_count"] == 0 and len(card["data"]["warnings"]) == 1
    assert "viral_pneumonia" in card["data"]["warnings"][0]
    assert _skipped_csv(run) == {}, "skipped.csv exists with its header when nothing was skipped"


def test_class_warnings_name_each_class_that_cannot_be_measured():
    ok = MIN_CLASS_IMAGES
    counts = {"train": {"a": ok, "b": 5, "c": 1}, "val": {"a": 2, "b": 0, "c": 1}, "test": {"a": 2, "b": 3, "c": 1}}
    warnings = class_warnings(counts, ["a", "b", "c"])
    assert len(warnings) == 2 and "class b has 8 image(s) (train/val/test 5/0/3)" in warnings[0]
    assert "class c has 3 image(s)" in warnings[1]


def test_with_several_data_roots_every_roots_skipped_files_are_listed(blob_writer, tmp_path, capsys):
    a = blob_writer(tmp_path / "a", per_class=8, size=32, seed=1)
    b = blob_writer(tmp_path / "b", per_class=8, size=32, seed=2)
    (a / "covid" / "broken_a.png").write_bytes(b"nope")
    (b / "normal" / "broken_b.png").write_bytes(b"nope")
    run = tmp_path / "run"
    argv = _train_args(a, run, tmp_path / "cache")
    argv.insert(argv.index(str(a)) + 1, str(b))  # --data A B
    main(argv)
    assert "2 file(s) left out of training" in " ".join(capsys.readouterr().out.split())
    assert set(_skipped_csv(run)) == {"broken_a.png", "broken_b.png"}
    assert json.loads((run / "model_card.json").read_text())["data"]["skipped_count"] == 2
