"""``cxr predict`` and ``cxr export`` end to end: formats, folders with bad files, backends."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from cxrkit import RESEARCH_NOTICE
from cxrkit.cli.main import main

CLASSES = ["covid", "viral_pneumonia", "normal"]


@pytest.fixture(scope="module")
def scans(blob_dataset, tmp_path_factory):
    """A folder tree of 6 good images, a corrupt PNG, a text file and a suffix-less DICOM."""
    root = tmp_path_factory.mktemp("scans")
    for c in CLASSES:
        for p in sorted((blob_dataset / c).glob("*.png"))[:2]:
            (root / c).mkdir(exist_ok=True)
            shutil.copy(p, root / c / p.name)
    (root / "normal" / "broken.png").write_bytes((root / "normal" / "normal_000.png").read_bytes()[:150])
    (root / "notes.txt").write_text("not an image, and not .png: skipped in folders")
    return root


def run_cli(args, capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_lists_predictions_errors_and_notice(tiny_run, scans, capsys, monkeypatch):
    from cxrkit.cli._console import console

    monkeypatch.setattr(console, "width", 250)  # whole paths on one line
    code, out, err = run_cli(["predict", str(tiny_run.run_dir), str(scans)], capsys)
    assert code == 1  # one input failed; the others were predicted
    assert "covid_000.png" in out and "viral_pneumonia" in out
    assert "1 file(s) could not be read" in out and "broken.png" in out and "corrupt or truncated" in out
    assert RESEARCH_NOTICE in out
    assert "skipped 1 non-image file" in err


def test_json_has_results_errors_and_notice(tiny_run, scans, capsys):
    code, out, _ = run_cli(
        ["predict", str(tiny_run.run_dir), str(scans), "--format", "json", "--threshold", "0.99"], capsys
    )
    doc = json.loads(out)
    assert code == 1 and doc["notice"] == RESEARCH_NOTICE and doc["threshold"] == 0.99
    assert doc["classes"] == CLASSES and doc["backend"] == "torch"
    assert len(doc["results"]) == 6 and [e["name"] for e in doc["errors"]] == [str(scans / "normal" / "broken.png")]
    right = sum(r["predicted_class"] == r["name"].split("/")[-2] for r in doc["results"])
    assert right >= 5
    assert all(r["uncertain"] == (r["confidence"] < 0.99) for r in doc["results"])


def test_csv_to_file_and_exit_zero_when_all_read(tiny_run, scans, tmp_path, capsys):
    good = [str(p) for p in sorted(scans.glob("covid/*.png"))]
    out_file = tmp_path / "pred.csv"
    code, out, _ = run_cli(["predict", str(tiny_run.run_dir), *good, "--out", str(out_file)], capsys)
    assert code == 0 and "wrote" in out
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert [r["file"] for r in rows] == good
    assert set(rows[0]) == {"file", "predicted_class", "confidence", "uncertain", "error", *(f"p_{c}" for c in CLASSES)}
    assert all(abs(sum(float(r[f"p_{c}"]) for c in CLASSES) - 1) < 1e-4 for r in rows)


def test_missing_input_and_empty_folder(tiny_run, tmp_path, capsys):
    code, out, _ = run_cli(["predict", str(tiny_run.run_dir), str(tmp_path / "nope.png"), "--format", "csv"], capsys)
    assert code == 1 and "no such file or folder" in out
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["predict", str(tiny_run.run_dir), str(tmp_path / "empty")], capsys)
    assert code == 2 and "no image files" in err


def test_dicom_input(tiny_run, make_dicom, synth_array, capsys):
    dcm = make_dicom("study/IM0001", synth_array(3).astype("uint16") * 100)
    code, out, _ = run_cli(["predict", str(tiny_run.run_dir), str(dcm.parent), "--format", "json"], capsys)
    doc = json.loads(out)
    assert code == 0 and [r["name"] for r in doc["results"]] == [str(dcm)]


def test_onnx_backend_agrees_with_torch(onnx_run, scans, capsys):
    docs = {}
    for backend in ("torch", "onnx"):
        argv = ["predict", str(onnx_run), str(scans), "--format", "json", "--backend", backend, "--precision", "32"]
        _, out, _ = run_cli(argv, capsys)  # fp32 torch: --precision auto is bf16 on AVX-512 BF16 CPUs
        docs[backend] = json.loads(out)
    assert docs["onnx"]["backend"] == "onnx"
    for a, b in zip(docs["torch"]["results"], docs["onnx"]["results"]):
        assert a["name"] == b["name"] and a["predicted_class"] == b["predicted_class"]
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in CLASSES) <= 1e-4


def test_precision_flag_is_recorded_and_bf16_stays_near_fp32(tiny_run, scans, capsys):
    docs = {}
    for precision in ("32", "bf16"):
        argv = ["predict", str(tiny_run.run_dir), str(scans), "--format", "json", "--precision", precision]
        docs[precision] = json.loads(run_cli(argv, capsys)[1])
        assert docs[precision]["precision"] == precision
    for a, b in zip(docs["32"]["results"], docs["bf16"]["results"], strict=True):
        assert a["name"] == b["name"]
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in CLASSES) < 0.05  # bf16: 8-bit mantissa


def test_cam_writes_overlays(tiny_run, scans, tmp_path, capsys):
    from PIL import Image

    cam_dir = tmp_path / "cams"
    code, _, err = run_cli(
        ["predict", str(tiny_run.run_dir), str(scans / "covid"), "--cam", "--cam-dir", str(cam_dir), "--format", "csv"],
        capsys,
    )
    assert code == 0 and "Grad-CAM" in err
    written = sorted(cam_dir.glob("*.png"))
    assert [p.name for p in written] == ["covid_000_cam.png", "covid_001_cam.png"]
    assert Image.open(written[0]).format == "PNG"


def test_export_refuses_without_a_format(tiny_run, capsys):
    code, _, err = run_cli(["export", str(tiny_run.run_dir)], capsys)
    assert code == 2 and "--onnx" in err
