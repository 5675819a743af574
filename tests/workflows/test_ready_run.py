"""A trained run is ready at once: `cxr train` fits the temperature and the other-abnormal
threshold on val, and `cxr evaluate` reads them and never changes what the run predicts."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_predict_after_train_equals_predict_after_evaluate(
    blob_writer, blob_folder, tiny_train_argv, tmp_path, multiprocess_env
):
    # 230 films per class: val holds >= 30 normals, enough to fit both the temperature and the flag
    data = blob_writer(tmp_path / "d", per_class=230)
    blob_folder(data, "pneumonia", (48, 48), 40, seed=9)
    run, cache = tmp_path / "run", tmp_path / "cache"
    subprocess.run(tiny_train_argv(data, run, cache), check=True, env=multiprocess_env, capture_output=True)
    card = json.loads((run / "model_card.json").read_text())
    assert card["calibration"]["fitted_on"] == "val" and card["calibration"]["val_images"] >= 30
    assert card["calibration"]["other_abnormal"]["threshold"] is not None

    films = [str(p) for p in sorted(data.glob("*/*_00[0-4].png"))]

    def predict(name):
        out = tmp_path / name
        cmd = [
            sys.executable,
            "-m",
            "cxrkit",
            "predict",
            str(run),
            *films,
            "--out",
            str(out),
            "--backend",
            "torch",
            "--precision",
            "32",
        ]
        subprocess.run(cmd, check=True, env=multiprocess_env, capture_output=True)
        return out.read_bytes()

    before = predict("before.csv")
    assert b"other_abnormal_flag" in before.splitlines()[0]
    evaluate = [sys.executable, "-m", "cxrkit", "evaluate", str(run), "--workers", "1", "--resamples", "10"]
    subprocess.run(evaluate, check=True, env=multiprocess_env, capture_output=True)
    assert json.loads((run / "model_card.json").read_text())["calibration"] == card["calibration"]
    assert predict("after.csv") == before
