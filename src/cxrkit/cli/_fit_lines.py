"""A training's progress as plain lines (Lightning callback), for commands that train off a terminal.

Imported when a command trains, not at ``cxr --help`` (it imports Lightning). Each epoch ends
with one line, ``epoch 3/12: train loss 0.4123, val loss 0.3801, val acc 0.9130, ETA 27m``;
within an epoch a line (batch, running train loss, ETA) is written when nothing was written for
``_plain.PLAIN_INTERVAL_S``. The ETA assumes every epoch runs (early stopping may end sooner)
and is capped by ``max_minutes``.
"""

from __future__ import annotations

import contextlib
import time

import lightning as L
from lightning.pytorch.callbacks import Timer

from ._console import plain
from ._plain import format_duration, heartbeat, lines

VAL_METRICS = (("val/loss", "val loss"), ("val/acc", "val acc"))  # logged by CxrClassifier


class FitLines(L.Callback):
    """Writes through :data:`cxrkit.cli._plain.lines`; reusable across fits (``cxr protocols``)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.monotonic()
        self.first_epoch = trainer.current_epoch  # a resumed run counts its ETA from here
        # a run resumed from a checkpoint taken after an epoch's last batch ends that epoch
        # without starting it again
        self.loss_sum, self.batches = 0.0, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.loss_sum, self.batches = 0.0, 0
        lines.set_step(self._epoch(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.loss_sum = self.loss_sum + loss.detach()  # stays on the device: no sync per batch
            self.batches += 1
        if lines.due():
            n = trainer.num_training_batches
            mean = f", train loss {float(self.loss_sum) / self.batches:.4f}" if self.batches else ""
            done = (batch_idx + 1) / n if n else 0.0
            lines.write(
                f"{self._epoch(trainer)}: batch {batch_idx + 1}/{n} ({done:.0%}){mean}, ETA {self._eta(trainer, done)}"
            )

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            lines.set_step(f"{self._epoch(trainer)}: validating")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        m = trainer.callback_metrics
        parts = [f"train loss {float(self.loss_sum) / self.batches:.4f}"] if self.batches else []
        parts += [f"{name} {float(m[key]):.4f}" for key, name in VAL_METRICS if key in m]
        lines.write(f"{self._epoch(trainer)}: {', '.join(parts)}, ETA {self._eta(trainer, 1.0)}")

    @staticmethod
    def _epoch(trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def _eta(self, trainer, epoch_fraction: float) -> str:
        """Time left for the remaining epochs at the pace since this fit started, capped by max_minutes."""
        total = max(1, (trainer.max_epochs or 1) - self.first_epoch)
        done = (trainer.current_epoch - self.first_epoch + epoch_fraction) / total
        elapsed = time.monotonic() - self.start
        left = elapsed * (1 - min(done, 1.0)) / done if done > 0 else None
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        cap = timer.time_remaining() if timer else None
        if cap is not None and (left is None or cap < left):
            return f"{format_duration(cap)} (max_minutes)"
        return "?" if left is None else format_duration(left)


@contextlib.contextmanager
def fit_progress():
    """The Lightning callbacks a command passes to ``train()``: off a terminal :class:`FitLines`,
    with the :func:`~cxrkit.cli._plain.heartbeat` running; on one, none (Lightning's rich bar
    shows the epochs)."""
    if not plain():
        yield ()
        return
    with heartbeat():
        yield (FitLines(),)
