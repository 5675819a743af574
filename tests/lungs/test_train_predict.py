"""Training learns the synthetic lobes; the run round-trips; predict writes masks, overlays, JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrkit import RESEARCH_NOTICE
from cxrkit.cli.main import main
from cxrkit.errors import UsageError
from cxrkit.lungs import LungSegmenter, LungTrainConfig, lung_masks_for, mask_pairs, train_lungs
from cxrkit.lungs.masks import find_mask_pairs
from cxrkit.lungs.train import dice, patient_split
from cxrkit.run.lung_card import CARD, WEIGHTS, LungRunError, read_card, write_card

from .conftest import two_lobe, write_pairs

pytestmark = pytest.mark.slow


def test_training_learns_held_out_lobes(lung_run):
    run, card = lung_run
    assert card["status"] == "done" and card["kind"] == "cxrkit-lung-segmenter"
    assert card["notice"] == RESEARCH_NOTICE
    test = card["test_dice"]
    assert test["n_images"] >= 8
    assert test["value"] > 0.85, card["history"]
    assert test["lo"] <= test["value"] <= test["hi"]
    lo, hi = card["fraction_range"]
    assert 0.02 <= lo < hi <= 1


def test_run_round_trips_and_predicts_unseen_films(lung_run):
    run, card = lung_run
    seg = LungSegmenter.from_run(run)
    assert seg.size == 64 and seg.fraction_range == tuple(card["fraction_range"])
    films = [two_lobe(1000 + i, (120, 100)) for i in range(4)]  # new seeds, another size
    masks = seg.predict_masks([f[0] for f in films])
    assert masks.shape == (4, 120, 100) and masks.dtype == bool
    assert np.mean([dice(m, f[1]) for m, f in zip(masks, films)]) > 0.8
    assert all(seg.quality(m)[0] for m in masks)


def test_interrupted_run_resumes_and_finished_run_is_not_overwritten(tmp_path):
    manifest = write_pairs(tmp_path / "d", 12, (32, 32))
    cfg = LungTrainConfig(input_size=32, epochs=3, batch_size=8, max_minutes=0, threads=1)  # stops after 1 epoch
    first = train_lungs(manifest, tmp_path / "run", cfg)
    assert first["epochs_run"] == 1 and (tmp_path / "run" / WEIGHTS).is_file()
    cfg.max_minutes = 10
    done = train_lungs(manifest, tmp_path / "run", cfg, resume=True)
    assert [h["epoch"] for h in done["history"]] == [1, 2, 3]
    assert done["history"][0] == first["history"][0]
    again = train_lungs(manifest, tmp_path / "run", cfg, resume=True)
    assert again["history"] == done["history"]  # finished: nothing more to train
    with pytest.raises(UsageError, match="not empty"):
        train_lungs(manifest, tmp_path / "run", cfg)


def test_patient_split_keeps_patients_together(tmp_path):
    pairs = mask_pairs(write_pairs(tmp_path, 40, (16, 16)))
    roles = patient_split(pairs, 0.1, 0.2, seed=3)
    by_patient = {}
    for p, r in zip(pairs, roles):
        by_patient.setdefault(p.patient_id, set()).add(r)
    assert all(len(r) == 1 for r in by_patient.values())
    assert set(roles) == {"train", "val", "test"}


def test_card_round_trip_and_errors(tmp_path):
    write_card(tmp_path, {"arch": "unet_small", "input_size": 64})
    card = read_card(tmp_path)
    assert card["arch"] == "unet_small" and card["notice"] == RESEARCH_NOTICE
    (tmp_path / CARD).write_text(json.dumps({"kind": "other"}))
    with pytest.raises(LungRunError, match=CARD):
        read_card(tmp_path)
    with pytest.raises(LungRunError, match="not found"):
        LungSegmenter.from_run(tmp_path / "nothing")


def test_cli_predict_writes_masks_overlays_boxes(lung_run, tmp_path, capsys):
    run, _ = lung_run
    paths = []
    for i in range(3):
        img, _ = two_lobe(2000 + i, (100, 90))
        paths.append(tmp_path / f"film{i}.png")
        Image.fromarray(img).save(paths[-1])
    Image.fromarray(np.full((100, 90), 128, np.uint8)).save(tmp_path / "blank.png")  # no lungs
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    main(
        [
            "lungs",
            "predict",
            str(run),
            *map(str, paths),
            str(tmp_path / "blank.png"),
            str(tmp_path / "broken.png"),
            "--out",
            str(out),
        ]
    )
    report = json.loads((out / "lungs.json").read_text())
    assert report["notice"] == RESEARCH_NOTICE
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in report["images"]}
    assert "error" in rows["broken.png"]
    assert rows["blank.png"]["ok"] is False  # a flat film has no plausible lungs: flagged, whatever the net drew
    for i in range(3):
        row = rows[f"film{i}.png"]
        assert row["ok"], row
        x0, y0, x1, y1 = row["box"]
        assert 0 <= x0 < x1 <= 90 and 0 <= y0 < y1 <= 100
        mask = np.array(Image.open(out / row["mask"]))
        assert mask.shape == (100, 90) and set(np.unique(mask)) <= {0, 255}
        assert abs(row["lung_fraction"] - (mask > 0).mean()) < 1e-3
        assert Image.open(out / row["overlay"]).size == (90, 100)
    printed = capsys.readouterr().out
    assert f"blank.png: {rows['blank.png']['quality']}" in printed and "film0" not in printed


def test_onnx_backend_gives_the_torch_masks(lung_run, tmp_path):
    run, _ = lung_run
    films = [two_lobe(3000 + i, (80, 70))[0] for i in range(5)]
    torch_seg, onnx_seg = LungSegmenter.from_run(run), LungSegmenter.from_run(run, backend="onnx")
    assert (run / "lungs.onnx").is_file()
    p_torch, p_onnx = torch_seg.probabilities(films), onnx_seg.probabilities(films)
    assert max(float(np.abs(a - b).max()) for a, b in zip(p_torch, p_onnx)) < 1e-3
    assert (torch_seg.predict_masks(films) == onnx_seg.predict_masks(films)).mean() > 0.999
    with pytest.raises(UsageError, match="backend"):
        LungSegmenter.from_run(run, backend="tensorrt")


def test_lung_masks_for_gives_none_where_the_caller_must_fall_back(lung_run):
    run, _ = lung_run
    films = [two_lobe(4000, (90, 90))[0], np.full((90, 90), 128, np.uint8)]
    good, flat = lung_masks_for(films, run)
    assert good.shape == (90, 90) and good.dtype == bool and good.any()
    assert flat is None
    assert lung_masks_for(films, None) == [None, None]


def test_a_folder_holding_manifest_and_masks_reads_as_its_manifest(tmp_path):
    """``cxr lungs train --data lungmasks`` (the folder, not its CSV) finds the same pairs."""
    manifest = write_pairs(tmp_path / "lungmasks", 6, (32, 32))
    assert mask_pairs(manifest.parent) == mask_pairs(manifest)


def _kaggle_with_missing_masks(root, n: int = 20, missing: int = 5):
    """A Kaggle v4 class folder (COVID/images + COVID/masks) where the last ``missing`` masks are absent."""
    for sub in ("images", "masks"):
        (root / "COVID" / sub).mkdir(parents=True)
    for i in range(n):
        img, mask = two_lobe(i, (32, 32))
        Image.fromarray(img).save(root / "COVID" / "images" / f"COVID-{i}.png")
        if i < n - missing:
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "COVID" / "masks" / f"COVID-{i}.png")
    return root


def test_cli_lung_training_lists_images_without_masks(tmp_path, capsys):
    """5 of 20 masks missing: the 15 pairs train, the 5 images are named, listed and counted."""
    data = _kaggle_with_missing_masks(tmp_path / "kaggle")
    run = tmp_path / "run"
    main(["lungs", "train", "--data", str(data), "--out", str(run), "--input-size", "32", "--epochs", "1"])
    out = capsys.readouterr().out
    assert f"note: 5 image(s) left out of lung training, all listed in {run / 'skipped.csv'}" in out, out
    assert "COVID-15.png: no lung mask" in out
    with open(run / "skipped.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(Path(r["path"]).name for r in rows) == [f"COVID-{i}.png" for i in range(15, 20)]
    card = read_card(run)
    assert card["skipped_count"] == 5 and card["skipped_file"] == "skipped.csv"
    assert sum(card["split"].values()) == 15


def test_manifest_rows_with_empty_mask_cells_are_listed(tmp_path):
    manifest = write_pairs(tmp_path / "d", 8, (32, 32))
    lines = manifest.read_text().splitlines()
    lines[3] = lines[3].replace("mask2.png", "")  # img2.png: empty mask cell
    lines[5] = ",mask4.png,normal,p2"  # an empty file cell
    manifest.write_text("\n".join(lines) + "\n")
    pairs, left_out = find_mask_pairs(manifest)
    assert len(pairs) == 6
    assert left_out == [
        (str(tmp_path / "d" / "img2.png"), "empty 'mask' cell (manifest.csv line 4); left out"),
        ("manifest.csv line 6", "empty 'file' cell; left out"),
    ]
    notes = []
    cfg = LungTrainConfig(input_size=32, epochs=1, batch_size=8, threads=1)
    card = train_lungs(manifest, tmp_path / "run", cfg, on_note=notes.append)
    assert card["skipped_count"] == 2 and notes[0].startswith("note: 2 image(s) left out of lung training")
    assert (tmp_path / "run" / "skipped.csv").read_text().count("left out") == 2
