"""The lung U-Net under Lightning, in the classifier's pattern (a LightningModule run by a Trainer).

What it keeps from the lung trainer's own loop, and why:

* **one generator** shuffles each epoch (:class:`EpochBatches`) and draws every augmentation,
  and is saved in ``last.pt``: a resumed run continues the same random stream;
* **the learning rate follows the time budget**: :func:`cxrkit.lungs.train.learning_rate` is
  set before every optimiser step from the share of steps *or* of ``max_minutes`` spent,
  whichever is larger, so a run cut short on a busy CPU still ends annealed (Lightning's
  ``max_time`` would stop it at a high rate); hence manual optimisation;
* **after each epoch** (train, then val Dice) the best weights, the card and ``last.pt`` are
  written, and the run stops once the budget is spent.

``bench/lungs_loop_overhead.py`` times one epoch (96 films, 128 px, 6 steps) of this module
against the plain loop it replaced. On the shared 2-core host (load 4-10) single epochs varied
from 1 to 14 s under both, with the fastest rounds alike (1.09 s plain, 1.10 s an earlier
Lightning variant; 0.93 s this module), and the Trainer starts in 0.01-1 s: no cost of the
shared stack stands out of that noise. Rerun it on a quiet machine for a finer answer.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch

from .segmenter import to_input


class EpochBatches(torch.utils.data.Sampler):
    """Index batches of one epoch, in the order of ``randperm(n, generator)`` drawn at its start."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        for i in range(0, self.n, self.batch_size):
            yield order[i : i + self.batch_size].tolist()

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)


class LungSegmentation(L.LightningModule):
    """``net`` trained with ``loss`` on batches changed by ``augment(x, y, generator)``.

    ``state`` is the run's bookkeeping (step, seconds spent, epoch, best val Dice, history),
    shared with the caller; ``lr_at(step, progress)`` gives each step's rate; ``after_epoch``
    writes the run's files and returns whether the time budget is spent.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        size: int,
        optimizer: Callable,
        loss: Callable,
        augment: Callable,
        generator: torch.Generator,
        lr_at: Callable[[int, float], float],
        progress: Callable[[], float],
        state: dict,
        after_epoch: Callable[[float, float], bool],
    ):
        super().__init__()
        self.net, self.size = net, size
        self.automatic_optimization = False
        self._optimizer, self.loss, self.augment, self.generator = optimizer, loss, augment, generator
        self.lr_at, self.progress, self.state, self.after_epoch = lr_at, progress, state, after_epoch
        self._train_loss, self._val_scores = 0.0, []

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return to_input(x, self.size).contiguous(memory_format=torch.channels_last)

    def configure_optimizers(self):
        return self._optimizer

    def on_train_epoch_start(self) -> None:
        self._train_loss, self._val_scores = 0.0, []

    def training_step(self, batch, _):
        opt = self.optimizers()
        xb, yb = self.augment(*batch, self.generator)
        loss = self.loss(self.net(self._input(xb)), yb)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for group in opt.optimizer.param_groups:
            group["lr"] = self.lr_at(self.state["step"], self.progress())
        opt.step()
        self.state["step"] += 1
        self._train_loss += float(loss.detach()) * len(xb)

    def validation_step(self, batch, _):
        x, y = batch
        pred, t = self.net(self._input(x)) > 0, y > 0.5
        inter = (pred & t).sum((1, 2, 3)).float()
        self._val_scores += (2 * inter / (pred.sum((1, 2, 3)) + t.sum((1, 2, 3))).float().clamp_min(1)).tolist()

    def on_train_epoch_end(self) -> None:  # after this epoch's validation
        val_dice = sum(self._val_scores) / max(len(self._val_scores), 1)
        if self.after_epoch(self._train_loss, val_dice):
            self.trainer.should_stop = True


def fit(module: LungSegmentation, train, val, epochs: int, validate: bool = True) -> None:
    """Run up to ``epochs`` epochs of ``module`` on the CPU (the lung U-Net trains in minutes
    there); ``validate=False`` (benches) skips the val loop."""
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_val_batches=None if validate else 0,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,  # the best weights and last.pt are the run's own files
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train, val)
