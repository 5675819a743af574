"""roi: lungs end to end on synthetic films: training's cache, the Predictor (torch and ONNX),
serve, the card, and the fallback to the whole image when the segmentation fails."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from cxrkit.run.lung_card import LungRunError

from .conftest import CLASSES, N_NOISE, two_lobe


def test_card_records_the_roi_the_lung_weights_and_the_fallbacks(roi_run, lung_run):
    from cxrkit.lungs.preprocess import weights_sha256
    from cxrkit.run import read_card

    result, data, _ = roi_run
    card = read_card(result.run_dir)
    p = card.preprocessing.to_dict()
    assert p["roi"] == "lungs" and p["roi_margin"] == 0.05
    assert p["lung_run"] == "lungs" and p["lung_run_sha256"] == weights_sha256(lung_run[0])  # carried along
    assert weights_sha256(result.run_dir / "lungs") == p["lung_run_sha256"]
    assert card.training["roi_images"] == 3 * 8 + N_NOISE
    assert card.training["roi_fallbacks"] == N_NOISE  # the noise films, and only they
    examples = card.training["roi_fallback_examples"]
    assert len(examples) == N_NOISE, examples
    assert all("noise_" in e and ("no lung" in e or "one lung" in e) for e in examples), examples


def test_training_cache_and_predictor_give_the_same_pixels(roi_run):
    from cxrkit.data import load_dataset
    from cxrkit.data.cache import cached_images
    from cxrkit.inference import Predictor

    result, data, cache = roi_run
    predictor = Predictor.from_run(result.run_dir)
    ds = load_dataset(data, classes=",".join(CLASSES))
    before = sorted(cache.glob("images-*.npy"))
    cached = cached_images(ds, predictor.preprocessing, cache)
    assert sorted(cache.glob("images-*.npy")) == before  # the card's ROI finds training's own cache
    prepared = np.stack([predictor.prepare(r.path) for r in ds.records])
    np.testing.assert_array_equal(cached, prepared)
    base = predictor.preprocessing.base
    whole = np.stack([base.to_uint8(predictor._read(r.path, None)) for r in ds.records])
    is_noise = np.array(["noise_" in r.path.name for r in ds.records])
    np.testing.assert_array_equal(prepared[is_noise], whole[is_noise])  # fallback: the whole film
    assert all((prepared[i] != whole[i]).mean() > 0.3 for i in np.flatnonzero(~is_noise))  # a real crop


def test_roi_box_lies_inside_the_image_with_its_margin(roi_run):
    from cxrkit.inference import Predictor

    roi = Predictor.from_run(roi_run[0].run_dir).preprocessing
    img, mask = two_lobe(3)
    (box, reason), (none, why) = roi.boxes([img, np.full((96, 96), 100, np.uint8)])
    assert reason == "ok" and none is None and why != "ok"
    x0, y0, x1, y1 = box
    ys, xs = np.nonzero(mask)
    assert 0 <= x0 < xs.min() and xs.max() < x1 <= 96 and 0 <= y0 < ys.min() and ys.max() < y1 <= 96


def test_predict_outputs_flag_the_fallback(roi_run):
    from cxrkit.inference import Predictor
    from cxrkit.inference.formats import predictions_csv, predictions_json

    result, data, _ = roi_run
    predictor = Predictor.from_run(result.run_dir)
    files = [data / "covid" / "covid_0.png", data / "normal" / "noise_0.png"]
    preds = predictor.predict(files, workers=2)
    doc = predictions_json(preds, predictor, 0.5)
    flags = [r["roi_fallback"] for r in doc["results"]]
    assert flags[0] is None and "lung" in flags[1] and flags[1] == predictor.roi_fallback(str(files[1]))
    assert doc["roi"]["roi"] == "lungs"
    rows = predictions_csv(preds, predictor.classes, roi_fallback=predictor.roi_fallback).splitlines()
    assert rows[0].endswith(",roi_fallback") and rows[1].endswith(",") and rows[2].endswith(flags[1])


@pytest.mark.slow
def test_onnx_backend_applies_the_same_roi(roi_run):
    from cxrkit.inference import Predictor
    from cxrkit.inference.export import export_onnx

    result, data, _ = roi_run
    export_onnx(result.run_dir)
    files = sorted((data / "covid").glob("*.png"))[:4] + [data / "normal" / "noise_1.png"]
    torch_p, onnx_p = (
        Predictor.from_run(result.run_dir, backend="torch", precision="32"),
        Predictor.from_run(result.run_dir, backend="onnx"),
    )
    np.testing.assert_array_equal(
        np.stack([torch_p.prepare(f) for f in files]), np.stack([onnx_p.prepare(f) for f in files])
    )
    np.testing.assert_allclose(onnx_p.predict_proba(files), torch_p.predict_proba(files), atol=1e-4)


def test_serve_applies_the_roi(roi_run):
    from cxrkit.serve import create_app
    from cxrkit.serve.client import upload
    from cxrkit.serve.server import running

    result, data, _ = roi_run
    app = create_app(result.run_dir)
    predictor = app.state.predictor
    path = data / "viral_pneumonia" / "viral_pneumonia_2.png"
    noise = data / "normal" / "noise_0.png"
    with running(app) as url:
        doc = upload(f"{url}/v1/predict", path.read_bytes(), path.name).json()
        fell_back = upload(f"{url}/v1/predict", noise.read_bytes(), noise.name).json()
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as r:
            health = json.loads(r.read())
    served = doc["probabilities"]
    assert doc["roi_fallback"] is None and "lung" in fell_back["roi_fallback"]  # the noise film: no lungs
    assert health["roi"] == "lungs"
    with_roi = predictor.predict_proba([path])[0]
    whole = predictor.proba_from_uint8(predictor.preprocessing.base.to_uint8(predictor._read(path, None))[None])[0]
    assert list(served.values()) == pytest.approx(list(with_roi), abs=1e-6)
    assert np.abs(with_roi - whole).max() > 1e-4  # the ROI changed the answer: the test can tell


def test_roi_card_round_trips_and_old_cards_have_none(tmp_path):
    from cxrkit.run import PreprocessingSpec
    from cxrkit.run.card import _section

    spec = PreprocessingSpec(
        input_size=32, roi="lungs", roi_margin=0.1, roi_blank=True, lung_run="/x/lungs", lung_run_sha256="ab"
    )
    back = _section(PreprocessingSpec, json.loads(json.dumps(spec.to_dict())))
    assert back == spec
    old = PreprocessingSpec(input_size=32)
    assert "roi" not in old.to_dict() and _section(PreprocessingSpec, old.to_dict()).roi == "none"


def test_changed_lung_weights_or_a_missing_lung_run_are_refused(roi_run, lung_run, tmp_path):
    from cxrkit.data.transforms import Preprocessing
    from cxrkit.errors import UsageError
    from cxrkit.lungs.preprocess import build_pipeline, with_lung_roi

    base = Preprocessing(input_size=32)
    spec = {**base.to_dict(), "roi": "lungs", "lung_run": str(lung_run[0]), "lung_run_sha256": "0" * 64}
    with pytest.raises(LungRunError, match="not the ones this model was trained with"):
        build_pipeline(spec)
    with pytest.raises(LungRunError, match=r"model.safetensors: not found"):
        build_pipeline({**spec, "lung_run": str(tmp_path)})
    with pytest.raises(UsageError, match="--roi lungs needs --lung-run"):
        with_lung_roi(base, "lungs", None)
    with pytest.raises(UsageError, match="--roi-blank .* needs --roi lungs"):
        with_lung_roi(base, "none", blank=True)
    assert build_pipeline(base.to_dict()) == base and with_lung_roi(base) == base  # old cards: no ROI


def test_cam_overlays_are_drawn_on_the_lung_crop_the_maps_cover(roi_run, tiny_run):
    from cxrkit.inference import Predictor

    result, data, _ = roi_run
    predictor = Predictor.from_run(result.run_dir)
    film = predictor.decode(data / "covid" / "covid_1.png")
    ((box, reason),) = predictor.preprocessing.boxes([film])
    x0, y0, x1, y1 = box
    np.testing.assert_array_equal(predictor.preprocessing.view(film), film[y0:y1, x0:x1])
    assert reason == "ok" and (y1 - y0, x1 - x0) != film.shape
    plain = Predictor.from_run(tiny_run.run_dir)
    assert plain.preprocessing.view(film) is film


def test_roi_blank_blacks_out_all_but_the_predicted_lungs(roi_run):
    from cxrkit.inference import Predictor
    from cxrkit.lungs.preprocess import build_pipeline, film_mask

    result, data, _ = roi_run
    crop = Predictor.from_run(result.run_dir).preprocessing
    blank = build_pipeline({**crop.to_dict(), "roi_blank": True}, result.run_dir)
    assert blank.to_dict()["roi_blank"] is True and crop.to_dict()["roi_blank"] is False
    img, _ = two_lobe(5)
    ((box, reason, net_mask),) = blank._found([img])
    assert reason == "ok"
    x0, y0, x1, y1 = box
    inside = film_mask(net_mask, img.shape)[y0:y1, x0:x1]
    view = blank.view(img)
    assert 0.1 < inside.mean() < 0.9  # the crop holds lung and, between and around the lobes, other pixels
    assert (view[~inside] == 0).all() and (view[inside] == crop.view(img)[inside]).all()
    assert (blank.to_uint8(img) != crop.to_uint8(img)).mean() > 0.05
    films = [np.full((96, 96), 100, np.uint8)]  # no lungs: the fallback film is not blanked
    np.testing.assert_array_equal(blank.to_uint8_many(films)[0], crop.to_uint8_many(films)[0])


def test_a_moved_roi_run_predicts_the_same_without_its_lung_run(lung_run, tmp_path, tiny_config):
    """The run carries its lung model: move the folder, delete the lung run, same probabilities."""
    import shutil

    from cxrkit.inference import Predictor
    from cxrkit.training import train

    from .conftest import write_lung_dataset

    lungs = shutil.copytree(lung_run[0], tmp_path / "lungs_elsewhere")
    data = write_lung_dataset(tmp_path / "data", per_class=4)
    cfg = tiny_config(
        data, tmp_path / "run", tmp_path / "cache", input_size=32, epochs=1, roi="lungs", lung_run=str(lungs)
    )
    run = train(cfg, progress_bar=False).run_dir
    files = [data / "covid" / "covid_0.png", data / "normal" / "noise_0.png"]
    before = Predictor.from_run(run, precision="32").predict_proba(files)
    moved = shutil.move(str(run), tmp_path / "moved" / "run")
    shutil.rmtree(lungs)
    after = Predictor.from_run(moved, precision="32").predict_proba(files)
    np.testing.assert_array_equal(after, before)


@pytest.mark.slow
def test_export_makes_an_older_roi_run_self_contained(roi_run, lung_run, tmp_path):
    """A run whose card names its lung run by an absolute path (as before runs carried it)."""
    import shutil

    from cxrkit.inference import Predictor
    from cxrkit.inference.export import export_onnx
    from cxrkit.run import read_card, update_card

    result, data, _ = roi_run
    old = shutil.copytree(result.run_dir, tmp_path / "old")
    shutil.rmtree(old / "lungs")
    spec = read_card(old).preprocessing
    update_card(old, "preprocessing", type(spec)(**{**vars(spec), "lung_run": str(lung_run[0].resolve())}))
    files = [data / "covid" / "covid_1.png", data / "normal" / "noise_1.png"]
    before = Predictor.from_run(old, backend="torch", precision="32").predict_proba(files)
    export_onnx(old)
    assert read_card(old).preprocessing.lung_run == "lungs" and (old / "lungs" / "lungs.onnx").is_file()
    moved = shutil.move(str(old), tmp_path / "elsewhere")
    after = Predictor.from_run(moved, backend="torch", precision="32")  # the export would be auto's choice
    assert after.preprocessing.lung_run_dir == str((moved / "lungs").resolve())  # its own copy
    np.testing.assert_array_equal(after.predict_proba(files), before)
