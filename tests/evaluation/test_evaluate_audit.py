"""Evaluation and audit end to end on the tiny synthetic run."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from cxrkit.data import DatasetError
from cxrkit.data.regions import border_mask, occlude
from cxrkit.evaluation.audit import audit_run
from cxrkit.evaluation.evaluate import evaluate_run
from cxrkit.inference import Predictor
from cxrkit.inference.splits import predict_split
from cxrkit.lungs.locate import lung_box_mask
from cxrkit.run import RunError, read_card


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A private copy: evaluation writes the fitted temperature into the run's card."""
    return shutil.copytree(tiny_run.run_dir, tmp_path / "run")


@pytest.fixture(scope="module")
def blob_manifest(blob_dataset):
    """The blob images through a manifest with a population column (alternating)."""
    path = blob_dataset / "with_population.csv"
    files = sorted(p.relative_to(blob_dataset).as_posix() for p in blob_dataset.glob("*/*.png"))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "population"])
        for i, f in enumerate(files):
            w.writerow([f, f.split("/")[0], "adult" if i % 2 else "pediatric"])
    return path


def test_evaluate_on_the_runs_own_test_split(run_copy):
    ev = evaluate_run(run_copy, n_resamples=50, workers=1)
    assert ev["data"]["split"] == "test" and not ev["data"]["external"]
    assert ev["overall"]["n_images"] == sum(read_card(run_copy).data["split_counts"]["test"].values())
    acc = ev["overall"]["metrics"]["accuracy"]
    assert acc["lo"] <= acc["value"] <= acc["hi"]
    assert set(ev["roc"]) == {"covid", "viral_pneumonia", "normal"}
    assert ev["overall"]["bootstrap"]["unit"] == "image"  # the blob data has no patient ids
    t = read_card(run_copy).temperature
    assert t == ev["calibration"]["temperature"] and t > 0
    assert Predictor.from_run(run_copy).temperature == t  # later predictions use it


def test_subgroups_by_a_manifest_column(run_copy, blob_manifest):
    ev = evaluate_run(run_copy, data=blob_manifest, by=["population"], n_resamples=30, workers=1)
    groups = ev["subgroups"]["population"]
    assert set(groups) == {"adult", "pediatric"}
    assert sum(g["n_images"] for g in groups.values()) == ev["overall"]["n_images"]
    assert all("too wide" in g["warning"] for g in groups.values())  # < 30 images each
    with pytest.raises(ValueError, match="no column"):
        evaluate_run(run_copy, data=blob_manifest, by=["hospital"], n_resamples=10, workers=1)


def test_external_data_matches_classes_by_name(run_copy, blob_writer, tmp_path):
    ext = blob_writer(tmp_path / "ext", per_class=6, seed=5)
    shutil.rmtree(ext / "normal")
    shutil.copytree(ext / "covid", ext / "Lung_Opacity")
    ev = evaluate_run(run_copy, data=ext, n_resamples=20, workers=1)
    assert ev["data"]["external"] and ev["data"]["split"] == "all"
    assert ev["data"]["excluded"] == {"lung_opacity": 6}
    assert ev["data"]["missing_classes"] == ["normal"]
    assert ev["overall"]["n_images"] == 12
    assert any("normal" in w for w in ev["warnings"])
    with pytest.raises(ValueError, match="--split all"):
        predict_split(Predictor.from_run(run_copy), ext, "test", workers=1)


def test_data_without_any_model_class_is_a_clear_error(run_copy, blob_writer, tmp_path):
    ext = blob_writer(tmp_path / "ext", per_class=3)
    for name in ("covid", "normal", "viral_pneumonia"):
        (ext / name).rename(ext / f"other_{name}")
    with pytest.raises(DatasetError, match="none of the classes"):
        evaluate_run(run_copy, data=ext, n_resamples=10, workers=1)


def test_run_without_model_is_a_clear_error(run_copy):
    (run_copy / "model.safetensors").unlink()
    with pytest.raises(RunError, match="no model.safetensors"):
        evaluate_run(run_copy, n_resamples=10, workers=1)


def test_occlusion_masks_and_fill():
    size = 50
    assert lung_box_mask(size).mean() == pytest.approx(0.76 * 0.8, abs=0.03)
    assert not (lung_box_mask(size) & border_mask(size)).any()
    imgs = np.full((2, size, size), 200, np.uint8)
    imgs[:, 20:30, 20:30] = 0
    out = occlude(imgs, lung_box_mask(size))
    mean = imgs[0].mean()
    assert np.all(out[:, 20:30, 20:30] == np.rint(mean))
    assert np.all(out[:, 0, :] == 200)  # outside the hidden region untouched


def test_audit_finds_the_decision_in_the_lung_field(run_copy, blob_manifest):
    # The blobs that define the classes sit inside the central lung box: hiding it must
    # destroy performance and the verdict must say the decision depends on the lungs.
    preds = predict_split(Predictor.from_run(run_copy), blob_manifest, "all", workers=1)
    result = audit_run(Predictor.from_run(run_copy), columns=["population"], workers=1, preds=preds)
    occ = {o["condition"]: o["balanced_accuracy"] for o in result["occlusion"]}
    assert occ["original"] >= 0.8
    assert occ["lungs hidden"] <= 0.5
    assert occ["only lungs kept"] >= occ["original"] - 0.1
    assert "depends mostly on the lung region" in result["verdict"]
    # population is random here, so the probe cannot beat chance by much, once it is scored
    # only on images it did not train on (the run's val and test images)
    probe = next(p for p in result["probes"] if p["scope"] == "all classes")
    n_train = sum(read_card(run_copy).data["split_counts"]["train"].values())
    assert probe["n_eval"] == 72 - n_train
    assert probe["balanced_accuracy"] < 0.75
    assert probe["pixel_balanced_accuracy"] < 0.75  # the pixel baseline is probed on the same images
    assert result["adult_only"]["n_images"] == 36


def test_pixel_features_are_block_means():
    from cxrkit.evaluation.audit import pixel_features

    images = np.zeros((2, 25, 25), np.uint8)  # 25 is cut to 24: blocks of 2 x 2
    images[0, :2, :2] = 200
    images[1, 22:24, 22:24] = 100
    images[:, 24, :] = 255  # the cut-off row never counts
    f = pixel_features(images)
    assert f.shape == (2, 144)
    assert f[0, 0] == 200 and f[0, 1:].max() == 0
    assert f[1, 143] == 100 and f[1, :143].max() == 0


def _occ(original, hidden, kept, border):
    return [
        {"condition": c, "balanced_accuracy": v}
        for c, v in (
            ("original", original),
            ("lungs hidden", hidden),
            ("only lungs kept", kept),
            ("border band blanked", border),
        )
    ]


def test_verdict_rules():
    from cxrkit.evaluation.audit import verdict

    shortcut = verdict(_occ(0.95, 0.90, 0.60, 0.80), [], None, 3)
    assert "shortcut risk" in shortcut and "border" in shortcut
    assert "Keeping only the lung field preserves" not in shortcut
    lungs = verdict(_occ(0.95, 0.40, 0.94, 0.94), [], None, 3)
    assert "depends mostly on the lung region" in lungs and "preserves performance" in lungs
    probes = [
        {"attribute": "population", "scope": "all classes", "balanced_accuracy": 0.93, "class_balanced_accuracy": 0.95},
        {
            "attribute": "population",
            "scope": "within normal",
            "balanced_accuracy": 0.9,
            "class_balanced_accuracy": 0.95,
        },
    ]
    adults = {"n_images": 300, "balanced_accuracy": 0.85, "sensitivity": {"covid": 0.98, "normal": 0.72}}
    text = verdict(_occ(0.95, 0.40, 0.94, 0.94), probes, adults, 3)
    assert "as well as the class" in text and "encode it beyond the disease" in text
    assert "normal sensitivity 0.720" in text and "age split" in text
    assert "films themselves differ" not in text
    probes[1]["pixel_balanced_accuracy"] = 0.97
    assert "(the 12 x 12 block-averaged image alone: 0.970, so the films themselves differ)" in verdict(
        _occ(0.95, 0.40, 0.94, 0.94), probes, adults, 3
    )
    probes[1]["pixel_balanced_accuracy"] = 0.6
    assert "films themselves differ" not in verdict(_occ(0.95, 0.40, 0.94, 0.94), probes, adults, 3)
