"""Issue 12 classes 2, 6, 7 on the training side: refused starts leave nothing, tiny val sets fit no temperature."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxrkit.run import read_card

pytestmark = pytest.mark.timeout(600)


def _cxr(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CXR_NO_TCMALLOC": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cxrkit.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=cwd,
    )


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("payload", [b"", b"garbage bytes", b"PICKLE"], ids=["empty", "garbage", "pickle"])
def test_bad_weights_files_are_one_line_errors_and_leave_no_run_folder(blob_dataset, tmp_path, payload):
    weights = tmp_path / "w.pt"
    weights.write_bytes(pickle.dumps({"x": _Evil()}) if payload == b"PICKLE" else payload)
    out = tmp_path / "run"
    res = _cxr(
        "train",
        "--data",
        blob_dataset,
        "--out",
        out,
        "--model",
        "resdense_tiny",
        "--weights",
        weights,
        "--epochs",
        "1",
        "--input-size",
        "32",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert res.returncode == 2, res.stderr[-1500:]
    assert "Traceback" not in res.stderr and "w.pt" in res.stderr
    assert not out.exists(), "a failed start must not leave a half-made run folder"
    assert not (tmp_path / "pwned").exists()


def test_resume_with_a_malicious_checkpoint_is_refused_without_traceback(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    (run / "checkpoints" / "last.ckpt").write_bytes(pickle.dumps({"state_dict": _Evil()}))
    before = (run / "model.safetensors").read_bytes()
    # --epochs above the run's: a finished run is otherwise refused before its checkpoint is read
    res = _cxr("train", "--resume", run, "--epochs", "9", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "last.ckpt" in res.stderr, res.stderr[-1500:]
    assert not (tmp_path / "pwned").exists() and (run / "model.safetensors").read_bytes() == before


def test_a_finished_run_without_checkpoints_is_never_retrained(tiny_run, tmp_path, blob_dataset):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    shutil.rmtree(run / "checkpoints")
    before = (run / "model.safetensors").read_bytes()
    res = _cxr("train", "--data", blob_dataset, "--out", run, "--model", "resdense_tiny", "--epochs", "1")
    assert res.returncode == 2 and "already holds a run" in res.stderr
    assert (run / "model.safetensors").read_bytes() == before


def test_no_temperature_is_fitted_on_a_handful_of_val_images(tiny_run, tmp_path):
    from cxrkit.evaluation.evaluate import MIN_CALIBRATION_IMAGES, calibrate_run
    from cxrkit.inference import Predictor

    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    n_val = sum(read_card(run).data["split_counts"]["val"].values())
    assert n_val < MIN_CALIBRATION_IMAGES  # the synthetic run has ~11 val images
    cal = calibrate_run(Predictor.from_run(run), workers=1)
    assert cal["temperature"] == 1.0 and "not fitted" in cal["fitted_on"]
    assert read_card(run).temperature == 1.0


def test_explain_accepts_options_before_the_images(tiny_run, tmp_path, blob_dataset):
    image = sorted(Path(blob_dataset).glob("*/*.png"))[0]
    res = _cxr("explain", tiny_run.run_dir, "--out", tmp_path / "x", image)
    assert res.returncode == 0, res.stderr[-1500:]
    assert list((tmp_path / "x").glob("*.png"))


def test_external_evaluation_counts_and_lists_unreadable_files(tiny_run, tmp_path, blob_dataset):
    from cxrkit.evaluation.report import render_markdown
    from cxrkit.workflows import evaluate_and_report

    data = tmp_path / "ext"
    shutil.copytree(blob_dataset, data)
    (data / "covid" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (data / "normal" / "empty.png").write_bytes(b"")
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    result = evaluate_and_report(run, data, "all", resamples=20, workers=1, out=tmp_path / "ev")
    ev = result.evaluation
    assert {Path(s["path"]).name for s in ev["data"]["skipped"]} == {"broken.png", "empty.png"}
    assert any("2 unreadable file(s) skipped" in w for w in ev["warnings"])
    assert "unreadable" in render_markdown(ev)
    assert "broken.png" in (tmp_path / "ev" / "report.html").read_text()
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(saved["data"]["skipped"]) == 2
