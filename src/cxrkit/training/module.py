"""The LightningModule: loss, optimiser, schedule, augmentation on device, val metrics."""

from __future__ import annotations

import math

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from ..data.acquisition import make_augment
from ..data.transforms import Preprocessing


class _GradReverse(torch.autograd.Function):
    """Identity forward; gradient times ``-scale`` backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR factor: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class CxrClassifier(L.LightningModule):
    """Wraps any backbone returning logits; batches arrive as uint8 (B, 1, S, S) + labels.

    Augmentation and normalisation run in ``on_after_batch_transfer``, i.e. on the GPU when
    there is one. ``class_weights`` (inverse class frequency) counter class imbalance.
    """

    def __init__(
        self,
        model: nn.Module,
        classes: list[str],
        preprocessing: dict,
        class_weights: list[float] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1.0,
        label_smoothing: float = 0.1,
        augment: str = "basic",
        channels_last: bool = True,
        n_report: int | None = None,
        debias: dict[str, int] | None = None,
        debias_weight: float = 0.3,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.preprocessing = Preprocessing.from_dict(preprocessing)
        self.augment = make_augment(augment)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        # with auxiliary classes (trained on, never reported) val images are of the first
        # n_report classes and are scored on those logits: the renormalised softmax
        n = self.n_report = n_report or len(classes)
        # de-confounding: one adversary per column (e.g. population) reads the pooled features
        # through a gradient reversal, with the class as a second input, so the backbone is
        # pushed to drop what tells groups apart *within* a class, not the disease itself
        self.adversaries = nn.ModuleDict(
            {
                col: nn.Sequential(nn.Linear(model.num_features + len(classes), 128), nn.ReLU(), nn.Linear(128, k))
                for col, k in (debias or {}).items()
            }
        )
        self.val_loss = torchmetrics.MeanMetric()  # summed over batches and processes
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(n, average="micro")
        self.val_f1 = torchmetrics.classification.MulticlassF1Score(n, average="macro")
        self.val_recall = torchmetrics.classification.MulticlassRecall(n, average=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, *groups = batch
        x = x.float().div_(255.0)
        if self.training and self.augment is not None:
            x = self.augment(x)
        x = self.preprocessing.normalise(x)
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (x, y, *groups)

    def _loss(self, logits, y, reduction: str = "mean"):
        weight = None if self.class_weights is None else self.class_weights[: logits.shape[1]]
        return F.cross_entropy(
            logits, y, weight=weight, reduction=reduction, label_smoothing=self.hparams.label_smoothing
        )

    def training_step(self, batch, batch_idx):
        x, y, *groups = batch
        if not (groups and len(self.adversaries)):
            loss = self._loss(self(x), y)
        else:
            loss = self._debiased_loss(x, y, groups[0])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def _debiased_loss(self, x, y, groups):
        """Class loss + ``debias_weight`` x the adversaries' losses through the gradient reversal.

        The reversal's scale ramps 0 -> 1 over training (DANN's schedule) so the features first
        learn the classes, then lose the groups.
        """
        pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        loss = self._loss(self.model.get_classifier()(pooled), y)
        progress = self.global_step / max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer else 1.0
        scale = 2.0 / (1.0 + math.exp(-10 * progress)) - 1.0
        z = torch.cat([_GradReverse.apply(pooled, scale), F.one_hot(y, len(self.hparams.classes)).to(pooled.dtype)], 1)
        for k, (col, head) in enumerate(self.adversaries.items()):
            g = groups[:, k]
            if (g >= 0).any():
                out = head(z)
                loss = loss + self.hparams.debias_weight * F.cross_entropy(out, g, ignore_index=-1)
                known = g >= 0
                acc = (out.argmax(1)[known] == g[known]).float().mean()
                self.log(f"train/adversary_{col}_acc", acc, on_step=False, on_epoch=True, batch_size=int(known.sum()))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, *_ = batch
        logits = self(x)[:, : self.n_report]
        # the loss of the whole val set as F.cross_entropy's "mean" would give it (a sum over
        # images divided by the sum of their class weights), whatever the batches or processes
        per_image = self._loss(logits, y, reduction="none")
        w = self.class_weights[y] if self.class_weights is not None else torch.ones_like(per_image)
        self.val_loss.update(per_image / w, weight=w)
        self.val_acc.update(logits, y)
        self.val_f1.update(logits, y)
        self.val_recall.update(logits, y)

    def on_validation_epoch_end(self):
        # torchmetrics' compute() gathers the states of every process: each val image counts once.
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.log("val/acc", self.val_acc.compute(), prog_bar=True)
        self.log("val/macro_f1", self.val_f1.compute(), prog_bar=True)
        for name, r in zip(self.hparams.classes, self.val_recall.compute()):
            self.log(f"val/sensitivity_{name}", r)
        for m in (self.val_loss, self.val_acc, self.val_f1, self.val_recall):
            m.reset()

    def configure_optimizers(self):
        params = [p for p in (*self.model.parameters(), *self.adversaries.parameters()) if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
        )
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = int(self.hparams.warmup_epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
