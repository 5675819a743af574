"""The Predictor's public API: cxrkit.load(run).predict(...), thresholds, calibration, bad files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import cxrkit
from cxrkit.inference import DEFAULT_THRESHOLD, Predictor, find_images
from cxrkit.run import RunError
from cxrkit.run.layout import CARD_FILE

CLASSES = ["covid", "viral_pneumonia", "normal"]


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return cxrkit.load(tiny_run.run_dir)


def blob_files(blob_dataset, per_class=3):
    return [p for c in CLASSES for p in sorted((blob_dataset / c).glob("*.png"))[:per_class]]


def test_import_cxrkit_stays_light():
    import subprocess
    import sys

    code = "import sys, cxrkit; print(any(m in sys.modules for m in ('torch', 'numpy', 'fastapi')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_load_and_predict_files(predictor, blob_dataset):
    files = blob_files(blob_dataset)
    out = predictor.predict(files)
    assert out.errors == []
    assert [r.name for r in out.results] == [str(f) for f in files]
    for r, f in zip(out.results, files):
        assert list(r.probabilities) == CLASSES
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert r.predicted_class == max(r.probabilities, key=r.probabilities.get)
        assert r.confidence == max(r.probabilities.values())
        assert r.uncertain == (r.confidence < DEFAULT_THRESHOLD)
    accuracy = np.mean([r.predicted_class == f.parent.name for r, f in zip(out.results, files)])
    assert accuracy >= 0.75  # the tiny model learned where the blob is
    # the same numbers as the path evaluate uses
    probs = predictor.predict_proba(files)
    assert np.allclose(probs, [[r.probabilities[c] for c in CLASSES] for r in out.results], atol=1e-6)


def test_arrays_bytes_and_single_inputs_agree(predictor, blob_dataset):
    from cxrkit.data import read_image

    f = blob_files(blob_dataset, 1)[0]
    gray = read_image(f)
    by_path = predictor.predict(f).results[0]
    by_bytes = predictor.predict(f.read_bytes(), names=["upload.png"]).results[0]
    by_array = predictor.predict(gray).results[0]
    by_uint8 = predictor.predict((gray * 255).round().astype(np.uint8)).results[0]
    stack = predictor.predict(np.stack([gray, gray]))
    assert by_bytes.name == "upload.png" and by_array.name == "array[0]"
    assert len(stack.results) == 2
    for r in (by_bytes, by_array, by_uint8, *stack.results):
        assert r.probabilities == pytest.approx(by_path.probabilities, abs=1e-6)


def test_bad_inputs_are_reported_and_the_batch_goes_on(predictor, blob_dataset, tmp_path):
    good = blob_files(blob_dataset, 2)
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(good[0].read_bytes()[:100])
    bad = [tmp_path / "notes.png", tmp_path / "cut.png", tmp_path / "gone.png", np.zeros((2, 3, 4))]
    out = predictor.predict([*bad[:2], *good, *bad[2:]], workers=2)
    assert [r.name for r in out.results] == [str(g) for g in good]
    reasons = {e.name: e.reason for e in out.errors}
    assert set(reasons) == {str(bad[0]), str(bad[1]), str(bad[2]), "array[9]"}
    assert "not an image" in reasons[str(bad[0])]
    assert "corrupt or truncated" in reasons[str(bad[1])]
    assert "not found" in reasons[str(bad[2])]
    assert "2-D" in reasons["array[9]"]


def test_threaded_and_inline_decoding_agree_and_report_progress(predictor, blob_dataset):
    files = blob_files(blob_dataset, 8)
    predictor.batch_size = 5  # several batches in flight
    try:
        seen = []
        threaded = predictor.predict(files, workers=3, progress=lambda d, n: seen.append((d, n)))
        inline = predictor.predict(files, workers=0)
    finally:
        predictor.batch_size = 32
    assert [r.to_dict() for r in threaded.results] == [r.to_dict() for r in inline.results]
    assert seen[-1] == (24, 24) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_threshold_sets_the_uncertain_flag(tiny_run, predictor, blob_dataset):
    files = blob_files(blob_dataset, 2)
    assert all(r.uncertain for r in predictor.predict(files, threshold=1.0).results)
    assert not any(r.uncertain for r in predictor.predict(files, threshold=0.0).results)
    strict = cxrkit.load(tiny_run.run_dir, threshold=1.0)
    assert strict.threshold == 1.0 and all(r.uncertain for r in strict.predict(files).results)
    with pytest.raises(ValueError, match="between 0 and 1"):
        cxrkit.load(tiny_run.run_dir, threshold=1.5)
    with pytest.raises(ValueError, match="backend"):
        cxrkit.load(tiny_run.run_dir, backend="tensorrt")


def test_probabilities_use_the_runs_temperature(tiny_run, predictor, blob_dataset, tmp_path):
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    card = json.loads((run / CARD_FILE).read_text())
    card["calibration"] = {"temperature": 4.0}
    (run / CARD_FILE).write_text(json.dumps(card))
    files = blob_files(blob_dataset, 1)
    cool = cxrkit.load(tiny_run.run_dir, precision="32")  # the same arithmetic on both sides
    images = np.stack([cool.prepare(f) for f in files])
    logits = cool.logits_from_uint8(images)
    hot = cxrkit.load(run, precision="32").predict(files).results
    expected = np.exp(logits / 4.0) / np.exp(logits / 4.0).sum(1, keepdims=True)
    assert np.allclose([[r.probabilities[c] for c in CLASSES] for r in hot], expected, atol=1e-6)
    assert max(r.confidence for r in hot) < max(r.confidence for r in cool.predict(files).results)


def test_model_id_names_run_and_split(tiny_run, predictor):
    assert predictor.model_id == f"{tiny_run.run_dir.name}@{tiny_run.card.split_hash[:12]}"


def test_onnx_backend_needs_an_export(tiny_run):
    with pytest.raises(RunError, match="cxr export"):
        Predictor.from_run(tiny_run.run_dir, backend="onnx")


def test_find_images_walks_folders(tmp_path, make_image, make_dicom):
    a = make_image("scans/a.png")
    b = make_image("scans/deep/er/b.jpg", fmt="JPEG")
    dcm = make_dicom("scans/series/IM0001", np.zeros((8, 8), np.uint16))
    make_image("scans/.hidden/c.png")
    (tmp_path / "scans" / "readme.txt").write_text("x")
    (tmp_path / "scans" / ".DS_Store").write_text("x")
    explicit = tmp_path / "other.txt"
    explicit.write_text("named explicitly: kept, prediction will say why it fails")
    files, missing, ignored = find_images([tmp_path / "scans", explicit, tmp_path / "nope", a])
    assert files == [a, b, dcm, explicit]  # sorted walk, each file once
    assert [m.name for m in missing] == [str(tmp_path / "nope")] and "no such" in missing[0].reason
    assert ignored == 1
