"""fp32 vs bf16 vs int8 on a small trained model (synthetic blobs): same answers, close probabilities.

The int8 model is made the way users make it (`cxr export RUN --onnx --int8`): calibrated on the
run's train images, checked on its val images, recorded in the card. The parity inputs here are
a fresh blob set the model never saw.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import cxrkit
from cxrkit._precision import autocast
from cxrkit.inference import quantize
from cxrkit.inference.backends import _session
from cxrkit.inference.quantize import CARD_SECTION, INT8_FILE, OnnxInt8Backend, QuantizationError, parity
from cxrkit.run import RunError


@pytest.fixture(scope="module")
def int8_run(tiny_run, tmp_path_factory):
    from cxrkit.cli.main import main

    run = shutil.copytree(tiny_run.run_dir, tmp_path_factory.mktemp("int8") / "run")
    main(["export", str(run), "--onnx", "--int8", "--calibration", "48"])
    return run


@pytest.fixture(scope="module")
def fresh_images(tiny_run, blob_writer, tmp_path_factory):
    data = blob_writer(tmp_path_factory.mktemp("fresh"), per_class=70, seed=11)
    predictor = cxrkit.load(tiny_run.run_dir)
    return np.stack([predictor.prepare(p) for p in sorted(data.glob("*/*.png"))])


def int8_proba(run, images) -> np.ndarray:
    predictor = cxrkit.load(run, backend="onnx")
    logits = OnnxInt8Backend(predictor.run).forward(images[:, None])
    z = logits / predictor.temperature
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_bf16_matches_fp32(tiny_run, fresh_images):
    predictor = cxrkit.load(tiny_run.run_dir, precision="32")
    p32 = predictor.proba_from_uint8(fresh_images)
    with autocast("bf16"):
        pbf = predictor.proba_from_uint8(fresh_images)
    check = parity(p32, pbf)
    assert check["images"] == 210 and check["top1_agreement"] >= 0.99, check
    assert check["mean_abs_prob_diff"] < 0.01 and check["max_abs_prob_diff"] < 0.1, check
    assert check["max_abs_prob_diff"] > 0  # it did run in bf16


def test_int8_matches_fp32(int8_run, fresh_images):
    p32 = cxrkit.load(int8_run, backend="torch", precision="32").proba_from_uint8(fresh_images)
    check = parity(p32, int8_proba(int8_run, fresh_images))
    assert check["top1_agreement"] >= 0.99, check
    assert check["mean_abs_prob_diff"] < 0.02 and check["max_abs_prob_diff"] < 0.2, check
    assert check["max_abs_prob_diff"] > 0  # it is not the fp32 graph


def test_int8_card_entry_and_file(int8_run):
    card = json.loads((int8_run / "model_card.json").read_text())
    entry = card[CARD_SECTION]
    assert entry["file"] == INT8_FILE and (int8_run / INT8_FILE).is_file()
    assert entry["format"] in ("qdq", "qoperator") and set(entry["candidates"]) == {"qdq", "qoperator"}
    assert entry["calibration"] == {"split": "train", "images": 48, "method": "MinMax"}
    assert entry["check"]["split"] == "val" and entry["check"]["top1_agreement"] >= quantize.MIN_AGREEMENT
    assert (int8_run / INT8_FILE).stat().st_size < (int8_run / "model.onnx").stat().st_size / 2


def test_calibration_images_come_from_the_train_split(int8_run):
    rows = [line.split(",") for line in (int8_run / "split.csv").read_text().splitlines()[1:]]
    train = {r[0] for r in rows if r[2] == "train"}
    picked = quantize.split_images(int8_run, "train", 20)
    assert len(picked) == 20 and all(p.is_file() for p in picked)
    assert {p.relative_to(p.parents[1]).as_posix() for p in picked} <= train


def test_failing_parity_leaves_the_card_alone(tiny_run, tmp_path, monkeypatch):
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # unreachable: every candidate fails
    with pytest.raises(QuantizationError, match="no int8 model passed parity"):
        quantize.quantize_run(run, calibration=16, check=8, keep_failed=tmp_path / "failed.onnx")
    assert CARD_SECTION not in json.loads((run / "model_card.json").read_text())
    assert not (run / INT8_FILE).exists()
    assert (tmp_path / "failed.onnx").stat().st_size > 0  # kept where asked, for a bench to measure


def test_stale_int8_model_is_refused(int8_run, tmp_path):
    run = shutil.copytree(int8_run, tmp_path / "run")
    card = json.loads((run / "model_card.json").read_text())
    card[CARD_SECTION]["weights_sha256"] = "0" * 64  # as if made from an earlier model.safetensors
    (run / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(RunError, match="made from other weights"):
        OnnxInt8Backend(cxrkit.load(run, backend="onnx").run)
    (run / INT8_FILE).unlink()
    with pytest.raises(RunError, match="missing"):
        OnnxInt8Backend(cxrkit.load(run, backend="onnx").run)


def _set_int8_timing(run, int8_ms: float, fp32_ms: float) -> None:
    card = json.loads((run / "model_card.json").read_text())
    entry = card[CARD_SECTION]
    entry["candidates"][entry["format"]]["ms_per_batch32"], entry["fp32_ms_per_batch32"] = int8_ms, fp32_ms
    (run / "model_card.json").write_text(json.dumps(card))


def test_auto_backend_takes_the_fastest_export_that_passed_parity(tiny_run, int8_run, tmp_path, fresh_images):
    bare = cxrkit.load(tiny_run.run_dir, backend="auto")  # no export yet: torch, and says why
    assert bare.backend == "torch" and "no ONNX export" in bare.backend_note
    run = shutil.copytree(int8_run, tmp_path / "run")
    _set_int8_timing(run, 10.0, 20.0)
    fast = cxrkit.load(run, backend="auto")
    assert fast.backend == "onnx-int8" and fast.engine.model is None  # the torch weights are not even read
    np.testing.assert_allclose(fast.proba_from_uint8(fresh_images[:8]), int8_proba(run, fresh_images[:8]), atol=1e-6)
    _set_int8_timing(run, 30.0, 20.0)  # int8 measured slower at export (a CPU without VNNI): fp32 ONNX
    _session.cache_clear()
    slow = cxrkit.load(run, backend="auto")
    assert slow.backend == "onnx" and "not faster" in slow.backend_note
    assert _session.cache_info().misses == 1  # checked by auto, reused by the backend: loaded once
    assert cxrkit.load(run, backend="onnx").engine.session is slow.engine.session
    card = json.loads((run / "model_card.json").read_text())
    card[CARD_SECTION]["weights_sha256"] = card["onnx"]["weights_sha256"] = "0" * 64  # both stale
    (run / "model_card.json").write_text(json.dumps(card))
    stale = cxrkit.load(run, backend="auto")
    assert stale.backend == "torch" and "other weights" in stale.backend_note


def test_cam_overlays_of_an_onnx_predictor_use_the_torch_network(int8_run, tmp_path):
    from cxrkit.explain.cam_png import CamOverlays

    predictor = cxrkit.load(int8_run, backend="onnx")
    cams = CamOverlays(predictor)
    assert cams.predictor.backend == "torch" and cams.predictor.run.run_dir == predictor.run.run_dir
    image = predictor.blank_input()
    assert np.isfinite(cams.explain(image).maps).all()
