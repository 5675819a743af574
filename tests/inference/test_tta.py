"""Test-time augmentation: the views, and the Predictor averaging over them (torch and ONNX)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cxrkit.cli.main import main
from cxrkit.errors import UsageError
from cxrkit.inference import Predictor, softmax
from cxrkit.inference.tta import VIEWS, average_views, contrast, shift, view_names, views, zoom
from cxrkit.models import load_run
from cxrkit.run import read_card


@pytest.fixture(scope="module")
def batch(blob_dataset) -> np.ndarray:
    """Six blob images (two per class) as decoded 64 px uint8 arrays."""
    from PIL import Image

    files = sorted(blob_dataset.glob("*/*_00[0-1].png"))
    return np.stack([np.asarray(Image.open(f).convert("L")) for f in files])


def test_views_are_deterministic_distinct_and_keep_shape(batch):
    a, b = views(batch, "standard"), views(batch, "standard")
    assert len(a) == len(VIEWS) == len(view_names("standard")) == 7
    assert all(x.shape == batch.shape and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # no randomness
    assert np.array_equal(a[0], batch)
    for name, v in zip(VIEWS[1:], a[1:]):
        assert np.abs(v.astype(int) - batch).mean() > 1, name  # every other view changes the pixels
    assert views(batch, "none")[0] is batch and view_names("none") == ["identity"]


def test_shift_zoom_contrast_do_what_they_say(batch):
    d = 3
    moved = shift(batch, d)
    assert np.array_equal(moved[:, d:, d:], batch[:, :-d, :-d])
    assert np.array_equal(shift(batch, -d)[:, :-d, :-d], batch[:, d:, d:])
    assert np.abs(zoom(batch, 1.0).astype(int) - batch).max() <= 1  # factor 1 is (nearly) identity
    square = np.zeros((1, 64, 64), np.uint8)
    square[:, 20:44, 20:44] = 200  # 24 px side, centred: its area scales with the zoom squared
    for factor in (0.92, 1.08):
        area = (zoom(square, factor) > 100).sum()
        assert abs(area - (24 * factor) ** 2) < 60, factor
        assert zoom(square, factor)[0, 32, 32] == 200  # about the centre
    flat, steep = contrast(batch, 0.85), contrast(batch, 1.15)
    assert flat.std() < batch.std() < steep.std()
    assert np.abs(flat.mean((1, 2)) - batch.mean((1, 2))).max() < 1


def test_identity_only_is_plain_prediction_and_standard_averages_views(tiny_run, batch):
    run = load_run(tiny_run.run_dir)
    plain, none = Predictor(run, precision="32"), Predictor(run, precision="32", tta="none")
    images = np.stack([plain.preprocessing.to_uint8(b) for b in batch])
    assert np.array_equal(none.proba_from_uint8(images), plain.proba_from_uint8(images))
    assert np.array_equal(average_views(plain.proba_from_uint8, images, "none"), plain.proba_from_uint8(images))
    tta = Predictor(run, precision="32", tta="standard")
    got = tta.proba_from_uint8(images)
    t = plain.temperature
    expected = np.mean([softmax(plain.logits_from_uint8(v), t) for v in views(images, "standard")], axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(got - plain.proba_from_uint8(images)).max() > 1e-4  # the views change the answer
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)
    r = tta.predict(list(batch.astype(np.float32) / 255)).results
    assert len(r) == len(batch) and np.allclose([max(x.probabilities.values()) for x in r], got.max(1), atol=1e-6)
    with pytest.raises(UsageError, match="tta must be one of"):
        Predictor(run, tta="heavy")


def test_onnx_backend_with_tta_matches_torch(onnx_run, batch):
    a = Predictor.from_run(onnx_run, backend="torch", precision="32", tta="standard")
    b = Predictor.from_run(onnx_run, backend="onnx", tta="standard")
    images = np.stack([a.preprocessing.to_uint8(x) for x in batch])
    np.testing.assert_allclose(a.proba_from_uint8(images), b.proba_from_uint8(images), atol=1e-4)


def test_cli_predict_records_tta(tiny_run, blob_dataset, capsys):
    files = [str(p) for p in sorted(blob_dataset.glob("normal/*.png"))[:2]]
    main(["predict", str(tiny_run.run_dir), *files, "--format", "json", "--tta", "--precision", "32"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["tta"] == "standard" and doc["tta_views"] == list(VIEWS) and doc["ensemble_members"] is None
    expected = Predictor.from_run(tiny_run.run_dir, precision="32", tta="standard").predict(files).results
    for r, e in zip(doc["results"], expected, strict=True):
        assert r["probabilities"] == pytest.approx(e.probabilities, abs=1e-6)
    main(["predict", str(tiny_run.run_dir), *files, "--format", "json"])
    assert json.loads(capsys.readouterr().out)["tta"] == "none"


def test_evaluate_with_tta_keeps_the_runs_temperature_and_records_it(tiny_run, tmp_path):
    from cxrkit.workflows import evaluate_and_report

    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    plain = evaluate_and_report(run, resamples=20, workers=1).evaluation
    t_plain = read_card(run).temperature
    tta = evaluate_and_report(run, resamples=20, workers=1, tta="standard", out=tmp_path / "tta").evaluation
    assert read_card(run).temperature == t_plain  # fitted on plain val logits, as without TTA
    saved = json.loads((tmp_path / "tta" / "metrics.json").read_text())
    assert saved["tta"] == "standard" and saved["tta_views"] == list(VIEWS)
    assert plain["tta"] == "none"
    from cxrkit._precision import resolve_precision

    assert plain["precision"] == resolve_precision("auto")[0]  # what ran, recorded
    assert saved["overall"]["n_images"] == plain["overall"]["n_images"]
    assert tta["calibration"]["after"] != plain["calibration"]["after"]  # scored on the averaged views
