"""Issue 37 items 1, 2, 9 and 11b: a resume trains on or is refused without touching the run;
a run resumes from any folder; Ctrl-C says what was kept and how to continue."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from cxrkit.cli.main import main
from cxrkit.run import lock_path, read_card, update_card

pytestmark = pytest.mark.timeout(600)


def _state(run) -> dict:
    """Every path under ``run`` with its content's hash (folders: None), to tell any change."""
    return {
        p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        for p in sorted(run.rglob("*"))
    }


def _exit(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "this is a bug" not in err, err
    return exc.value.code, " ".join(err.split())


def _finished(tiny_run, dest):
    """A finished run (4 epochs) whose card holds a fitted calibration, as after `cxr evaluate`."""
    run = shutil.copytree(tiny_run.run_dir, dest)
    update_card(run, "calibration", {"temperature": 1.7, "fitted_on": "val (test)"})
    return run


def _killed(tiny_run, dest):
    """A run killed after its 4th epoch's checkpoint, before it wrote its model and card."""
    run = shutil.copytree(tiny_run.run_dir, dest)
    (run / "model_card.json").unlink()
    (run / "model.safetensors").unlink()
    return run


@pytest.mark.parametrize(
    "kind, flags, mention",
    [
        ("finished", [], "finished after 4 of 4 epoch(s)"),
        ("finished", ["--epochs", "4"], "has 4 epoch(s) done (finished"),
        ("finished", ["--epochs", "2"], "has 4 epoch(s) done (finished"),
        ("killed", ["--epochs", "2"], "has 4 epoch(s) done (not finished"),
    ],
    ids=["finished-plain", "finished-same-epochs", "finished-fewer", "killed-fewer"],
)
def test_a_resume_with_nothing_to_train_is_refused_and_changes_no_file(
    tiny_run, tmp_path, capsys, kind, flags, mention
):
    run = (_finished if kind == "finished" else _killed)(tiny_run, tmp_path / "run")
    before = _state(run)
    code, err = _exit(["train", "--resume", run, *flags], capsys)
    assert code == 2 and str(run) in err and mention in err and "--epochs" in err, err
    assert "current_epoch" not in err
    assert _state(run) == before, "a refused resume changed the run"
    assert not lock_path(run).exists()
    if kind == "finished":
        assert read_card(run).calibration.temperature == 1.7


def test_a_refused_resume_leaves_config_yaml_so_the_next_plain_resume_finishes_the_run(tiny_run, tmp_path, capsys):
    run = _killed(tiny_run, tmp_path / "run")
    code, _ = _exit(["train", "--resume", run, "--epochs", "2"], capsys)
    assert code == 2 and yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 4
    # all 4 epochs were done before the kill: the plain resume writes the model from the best checkpoint
    assert main(["train", "--resume", str(run)]) in (0, None)
    assert read_card(run).training["epochs_run"] == 4 and (run / "model.safetensors").is_file()


@pytest.mark.parametrize("kind", ["killed", "finished"])
def test_a_resume_with_more_epochs_trains_on_to_them(tiny_run, tmp_path, kind):
    run = (_finished if kind == "finished" else _killed)(tiny_run, tmp_path / "run")
    assert main(["train", "--resume", str(run), "--epochs", "5"]) in (0, None)
    card = read_card(run)
    assert card.training["epochs_run"] == 5 and yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 5
    # a new model: the old model's calibration no longer applies, and `cxr train` fits the new one
    assert card.calibration is not None and card.calibration.fitted_on != "val (test)"


def test_a_run_started_with_a_relative_data_path_resumes_from_another_folder_and_after_a_move(
    blob_dataset, tmp_path, tiny_settings, monkeypatch, capsys
):
    start = tmp_path / "project"
    shutil.copytree(blob_dataset, start / "data" / "tiny")
    monkeypatch.chdir(start)
    s = tiny_settings(tmp_path / "cache", epochs=1)
    argv = ["train", "--data", "data/tiny", "--out", "runs/r", "--model", s["model"], "--pretrained", "none"]
    argv += ["--epochs", "1", "--input-size", "32", "--workers", "1", "--cache-dir", "../cache"]
    assert main(argv) in (0, None)
    saved = yaml.safe_load((start / "runs" / "r" / "config.yaml").read_text())
    assert saved["data"] == str(start / "data" / "tiny") and saved["cache_dir"] == str(tmp_path / "cache")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (start / "runs" / "r" / "model_card.json").unlink()  # killed after its last checkpoint
    (start / "runs" / "r" / "model.safetensors").unlink()
    run = shutil.move(start / "runs" / "r", elsewhere / "moved")  # its checkpoints name the old folder
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", "moved"]) in (0, None)  # finished from its own best.ckpt
    assert read_card(run).training["epochs_run"] == 1
    assert main(["train", "--resume", "moved", "--epochs", "2"]) in (0, None)
    assert read_card(run).training["epochs_run"] == 2

    # a config.yaml written before paths were stored absolute: one line naming it and what to do
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(str(start / "data"), "data"))
    before = _state(run)
    code, err = _exit(["train", "--resume", run, "--epochs", "3"], capsys)
    assert code == 2 and f"{run / 'config.yaml'}: data 'data/tiny' is relative" in err and "absolute" in err, err
    assert _state(run) == before


def test_ctrl_c_says_training_stopped_keeps_the_checkpoint_and_exits_130(blob_dataset, tmp_path, tiny_train_argv):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CXR_NO_TCMALLOC": "1"}
    argv = tiny_train_argv(blob_dataset, out, tmp_path / "cache", "--epochs", "500", "--patience", "500")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    err = " ".join(proc.communicate(timeout=120)[1].split())
    assert proc.returncode == 130, err[-1500:]
    assert "training stopped by SIGINT" in err and "last.ckpt" in err, err[-1500:]
    assert f"cxr train --resume {out}" in err and "Traceback" not in err
    assert (out / "checkpoints" / "last.ckpt").is_file() and not lock_path(out).exists()
    assert not (out / "model_card.json").exists()
