"""End-to-end training on synthetic images: run directory, resume, loading, safety."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

import lightning as L
import numpy as np
import pytest
import torch

from cxrkit.errors import UsageError
from cxrkit.inference import Predictor
from cxrkit.models import DEFAULT_MODEL, load_run
from cxrkit.run import RunError, read_card
from cxrkit.training import TrainConfig, train
from cxrkit.training.checkpoint_io import SafeCheckpointIO
from cxrkit.training.config import DEFAULT_MODEL as CONFIG_DEFAULT_MODEL


def test_run_directory_has_everything_needed(tiny_run):
    run = tiny_run.run_dir
    for name in (
        "config.yaml",
        "split.csv",
        "model.safetensors",
        "model_card.json",
        "checkpoints/last.ckpt",
        "logs/version_0/metrics.csv",
    ):
        assert (run / name).is_file(), name
    card = read_card(run)
    assert card.classes == ["covid", "viral_pneumonia", "normal"]
    assert card.preprocessing.input_size == 64
    assert card.model.name == "resdense_tiny"
    assert card.weights_source == "none"
    assert len(card.split_hash) == 16 and card.data["images"] == 72
    assert card.versions["torch"] == torch.__version__.split("+")[0]
    assert "research" in card.notice.lower()
    assert 0.0 <= card.val_metrics["val/acc"] <= 1.0


def test_tiny_model_learns_the_synthetic_task(tiny_run, blob_dataset):
    # Each class is a bright blob in its own place: a working pipeline learns it in 4 epochs.
    assert tiny_run.card.val_metrics["val/acc"] >= 0.8
    pred = Predictor.from_run(tiny_run.run_dir)
    paths = sorted(blob_dataset.glob("*/*.png"))
    probs = pred.predict_proba(paths)
    truth = np.array([pred.classes.index(p.parent.name) for p in paths])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == truth).mean() >= 0.8


def test_loaded_run_gives_the_same_outputs_as_the_trained_module(tiny_run, blob_dataset):
    loaded = load_run(tiny_run.run_dir)
    x = loaded.preprocessing(np.random.default_rng(0).random((80, 70)).astype(np.float32))
    again = load_run(tiny_run.run_dir)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), again.model(x))
    assert loaded.preprocessing.to_dict() == read_card(tiny_run.run_dir).preprocessing.to_dict()


class CrashAfterEpoch(L.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_resume_after_crash_continues_and_gives_a_loadable_model(blob_dataset, tiny_config, tmp_path):
    config = tiny_config(blob_dataset, tmp_path / "run", tmp_path / "cache", epochs=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, progress_bar=False, callbacks=(CrashAfterEpoch(1),))
    assert (tmp_path / "run/checkpoints/last.ckpt").is_file()
    assert not (tmp_path / "run/model.safetensors").exists()
    with pytest.raises(RunError, match="resume"):
        load_run(tmp_path / "run")
    saved = TrainConfig.from_yaml((tmp_path / "run/config.yaml").read_text())
    assert saved == config
    result = train(saved, resume=True, progress_bar=False)
    assert result.card.training["epochs_run"] == 3
    # Each attempt keeps its own log: nothing written before the crash is lost.
    logs = sorted((tmp_path / "run/logs").glob("version_*/metrics.csv"))
    assert len(logs) == 2 and all(len(f.read_text().splitlines()) > 1 for f in logs)
    probs = Predictor.from_run(tmp_path / "run").predict_proba(sorted(blob_dataset.glob("covid/*.png"))[:3])
    assert probs.shape == (3, 3)


def test_resume_without_checkpoint_is_a_clear_error(blob_dataset, tiny_config, tmp_path):
    config = tiny_config(blob_dataset, tmp_path / "empty", tmp_path / "cache")
    with pytest.raises(UsageError, match="nothing to resume"):
        train(config, resume=True, progress_bar=False)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_new_run_never_overwrites_an_existing_one(tiny_run, blob_dataset, tiny_config, tmp_path):
    before = (tiny_run.run_dir / "model.safetensors").read_bytes()
    config = tiny_config(blob_dataset, tiny_run.run_dir, tmp_path / "cache")
    with pytest.raises(UsageError, match="--resume"):
        train(config, progress_bar=False)
    assert (tiny_run.run_dir / "model.safetensors").read_bytes() == before


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "last.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": Evil(marker)}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        SafeCheckpointIO().load_checkpoint(evil)
    assert not marker.exists()


def test_checkpoints_are_written_atomically(tmp_path):
    path = tmp_path / "c.ckpt"
    SafeCheckpointIO().save_checkpoint({"a": torch.ones(2)}, path)
    assert torch.equal(SafeCheckpointIO().load_checkpoint(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]  # no temporary left behind


def test_run_without_model_card_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="not a run directory"):
        load_run(tmp_path)


def test_config_yaml_round_trip_and_unknown_keys(tmp_path):
    config = TrainConfig(data="d", out="o", classes="covid,normal", fractions=(0.8, 0.1, 0.1))
    assert TrainConfig.from_yaml(config.to_yaml()) == config
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_yaml(config.to_yaml() + "colour: blue\n")
    assert dataclasses.replace(config, out="x").out == "x"


def test_default_model_is_one_name():
    assert CONFIG_DEFAULT_MODEL == DEFAULT_MODEL


def test_card_is_valid_json_with_git_commit_key(tiny_run):
    card = json.loads((tiny_run.run_dir / "model_card.json").read_text())
    assert "git_commit" in card
