"""Stop a training on the first SIGINT or SIGTERM, at the next batch, with a checkpoint to resume from.

Why not Lightning's own handling: after its SIGTERM handler the process ended with status 0 and
not a word (a script could not tell a stopped run from a finished one), and after Ctrl-C with
status 1; neither said how to continue. Here the first signal is noted; at the end of the
training batch in progress :class:`StopOnSignal` saves ``checkpoints/last.ckpt`` (atomically,
over the epoch-end one) and raises :class:`TrainingStopped`, which the caller reports (``cxr
train`` prints the resume command and exits 128 + the signal number: 130, 143). A signal during
an epoch's last batch or its validation stops when that validation ends, with the epoch's own
checkpoint. A second signal stops at once, wherever the training is; the previous ``last.ckpt``
(written whole or not at all) is kept.

A run of several processes keeps Lightning's handling: there the ranks must agree on the batch
to stop at, which Lightning's broadcast does.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from ..errors import CxrkitError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(CxrkitError):
    """A signal stopped the training; ``checkpoint`` is where it can resume from (None: nowhere yet)."""

    def __init__(self, signum: int, checkpoint: Path | None, where: str, saved: bool = True):
        self.signum = signum
        self.checkpoint = checkpoint
        self.exit_code = 128 + signum  # what a shell reports for a process ended by the signal
        kept = "no checkpoint yet" if checkpoint is None else f"checkpoint {'saved' if saved else 'kept'}: {checkpoint}"
        super().__init__(f"training stopped by {signal.Signals(signum).name} {where}; {kept}")


class StopOnSignal(Checkpoint):
    """First SIGINT/SIGTERM during ``fit``: save ``checkpoint`` after the training batch in
    progress (or keep the epoch's, when validating) and raise :class:`TrainingStopped`.

    A :class:`~lightning.pytorch.callbacks.Checkpoint` so that Lightning calls it after the
    other callbacks and after ``ModelCheckpoint``: at an epoch's end that epoch's ``last.ckpt``
    is written first. The handlers go in at the sanity check and at the start of training, after Lightning has
    put its own (which it restores when the fit ends), and only in the main thread of a
    single-process run. Before that a signal acts as in any Python program.
    """

    def __init__(self, checkpoint: str | Path):
        self.checkpoint = Path(checkpoint)
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.signum = None

    def _install(self, trainer: L.Trainer) -> None:
        if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if current == signal.SIG_IGN or signum in self._previous:  # ignored (SIGINT of a background job)
                continue
            self._previous[signum] = current
            signal.signal(signum, self._note)

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._install(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self._install(trainer)

    def _note(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self._restore()  # the second signal: stop now, with the last epoch's checkpoint if any
        last = self.checkpoint if self.checkpoint.is_file() else None
        raise TrainingStopped(signum, last, "at once (a second signal)", saved=False)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _stop_if_asked(self, trainer: L.Trainer, where: str) -> None:
        if self.signum is None:
            return
        trainer.save_checkpoint(self.checkpoint)
        self._restore()
        raise TrainingStopped(self.signum, self.checkpoint, where)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:  # the epoch's last: validate it first
            return
        self._stop_if_asked(
            trainer, f"in epoch {trainer.current_epoch + 1} after batch {batch_idx + 1}/{trainer.num_training_batches}"
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """A signal during the epoch's last batch or its validation: stop once the epoch's own
        ``last.ckpt`` is written (a checkpoint taken inside a validation does not resume: its
        metrics are gone; one taken before it resumes without validating that epoch)."""
        if self.signum is not None:
            self._restore()
            last = self.checkpoint if self.checkpoint.is_file() else None
            raise TrainingStopped(self.signum, last, f"at the end of epoch {trainer.current_epoch + 1}", saved=False)

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()
