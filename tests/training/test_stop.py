"""A signal during fit stops at the next batch with a checkpoint, and the run resumes from it."""

from __future__ import annotations

import csv
import os
import signal

import lightning as L
import pytest
import torch

from cxrkit.run import RunDir
from cxrkit.training import train
from cxrkit.training.stop import TrainingStopped


class SignalAt(L.Callback):
    """Sends ``signals`` to this process at the end of one training or validation batch (before
    StopOnSignal looks, which Lightning calls after the other callbacks)."""

    def __init__(self, *signals: int, stage: str = "train", epoch: int = 0, batch: int | str = 0):
        self.signals, self.stage, self.epoch, self.batch = signals, stage, epoch, batch

    def _maybe(self, trainer, stage: str, batch_idx: int) -> None:
        batch = trainer.num_training_batches - 1 if self.batch == "last" else self.batch
        if (stage, trainer.current_epoch, batch_idx) == (self.stage, self.epoch, batch):
            for signum in self.signals:
                os.kill(os.getpid(), signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._maybe(trainer, "train", batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._maybe(trainer, "val", batch_idx)


def _global_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def test_sigint_stops_after_the_next_batch_and_the_run_resumes(blob_dataset, tmp_path, tiny_config):
    config = tiny_config(blob_dataset, tmp_path / "run", tmp_path / "cache", epochs=3)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingStopped) as stopped:
        train(config, progress_bar=False, callbacks=(SignalAt(signal.SIGINT, epoch=1, batch=0),))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers given back
    exc, run = stopped.value, RunDir(config.out)
    assert exc.signum == signal.SIGINT and exc.exit_code == 130
    assert "by SIGINT in epoch 2 after batch 1/" in str(exc) and exc.checkpoint == run.last_checkpoint
    per_epoch = int(str(exc).split("batch 1/")[1].split(";")[0])
    assert _global_step(run.last_checkpoint) == per_epoch + 1  # saved where it stopped, not at the epoch's end
    assert not run.is_finished()

    result = train(config, resume=True, progress_bar=False)
    assert result.card.training["epochs_run"] == 3 and run.is_finished()


def test_sigterm_while_validating_stops_when_it_ends_and_resumes(blob_dataset, tmp_path, tiny_config):
    config = tiny_config(blob_dataset, tmp_path / "run", tmp_path / "cache", epochs=2, batch_size=4)
    with pytest.raises(TrainingStopped) as stopped:
        train(config, progress_bar=False, callbacks=(SignalAt(signal.SIGTERM, stage="val", epoch=0, batch=0),))
    exc, run = stopped.value, RunDir(config.out)
    assert exc.exit_code == 143 and "by SIGTERM at the end of epoch 1" in str(exc)
    assert exc.checkpoint == run.last_checkpoint and _global_step(run.last_checkpoint) > 0  # the epoch's own
    assert train(config, resume=True, progress_bar=False).card.training["epochs_run"] == 2


def test_a_signal_in_the_last_batch_lets_the_epoch_validate_first(blob_dataset, tmp_path, tiny_config):
    from cxrkit.cli._fit_lines import FitLines

    config = tiny_config(blob_dataset, tmp_path / "run", tmp_path / "cache", epochs=2)
    with pytest.raises(TrainingStopped) as stopped:
        train(config, progress_bar=False, callbacks=(SignalAt(signal.SIGTERM, batch="last"),))
    assert "at the end of epoch 1; checkpoint kept" in str(stopped.value)
    with open(tmp_path / "run" / "logs" / "version_0" / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f) if r["val/loss"]] == ["0"]  # epoch 1 was validated
    # resumed at the start of epoch 2, with the CLI's progress lines on
    assert train(config, resume=True, progress_bar=False, callbacks=(FitLines(),)).card.training["epochs_run"] == 2


def test_a_second_signal_stops_at_once(blob_dataset, tmp_path, tiny_config):
    config = tiny_config(blob_dataset, tmp_path / "run", tmp_path / "cache", epochs=2)
    with pytest.raises(TrainingStopped) as stopped:
        train(config, progress_bar=False, callbacks=(SignalAt(signal.SIGTERM, signal.SIGTERM, epoch=0, batch=0),))
    # inside the first batch's hooks, before the first epoch's checkpoint: nothing to resume from
    assert (
        stopped.value.checkpoint is None
        and "at once" in str(stopped.value)
        and "no checkpoint yet" in str(stopped.value)
    )
    assert not RunDir(config.out).last_checkpoint.exists()
