"""Train a lung segmenter from (image, mask) pairs: ``train_lungs(data, out)``.

* **Split**: by patient (images without an id are their own patient), 70/10/20
  train/val/test by a seeded shuffle of patients; the lists go into the card and ``split.csv``.
* **Augmentation** on whole batches (one affine grid for image and mask): scale 0.6-1.15 and
  aspect 0.8-1.25 (a child's lungs fill less of the film, with more arms, neck and abdomen
  around them: zooming out mimics that), shift +-12%, rotation +-12 deg, then contrast,
  brightness and gamma on the image.
* **Loss**: BCE + soft Dice (per image). AdamW, warm-up then cosine decay over the epochs or
  ``max_minutes``, whichever ends first (a busy CPU then still gets an annealed model); the checkpoint with the best
  val Dice is kept. ``last.pt`` after each epoch makes a stopped run resumable.
* **Loop**: a LightningModule run by a Trainer, as the classifier's
  (:mod:`cxrkit.lungs.segmentation_module`, which says what it keeps from the former own loop).
* **Test**: Dice of each held-out image at its own size, with a patient bootstrap 95% CI.
* **Left out**: images without a mask (5 of 20 in a Kaggle folder, empty ``mask`` cells) and
  files the reader skipped were trained around in silence; like the classifier's, every one is
  now in ``skipped.csv`` (file, reason), counted in the card (``skipped_count``) and named in a
  note (the first :data:`SHOWN`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .._io import atomic_write_text, csv_text, text_bytes
from .._lightning import quiet_lightning
from .._meta import RESEARCH_NOTICE
from ..data import read_image
from ..errors import UsageError
from ..run import lung_card as cards
from ..run import writes_run
from .config import LungTrainConfig
from .masks import MaskPair, find_mask_pairs, read_mask
from .model import build
from .quality import fraction_range
from .segmenter import LungSegmenter

log = logging.getLogger(__name__)

SKIPPED = "skipped.csv"  # in the run directory: every image left out, with the reason
SHOWN = 5  # left-out files named in the note; all of them are in skipped.csv


def patient_split(pairs: list[MaskPair], val: float, test: float, seed: int) -> list[str]:
    """'train' / 'val' / 'test' for each pair; all images of one patient land in one split."""
    groups = [p.patient_id or f"image:{p.image}" for p in pairs]
    unique = sorted(set(groups), key=lambda g: hashlib.sha256(text_bytes(f"{seed}:{g}")).hexdigest())
    n = len(unique)
    n_test, n_val = max(1, round(test * n)), max(1, round(val * n))
    role = {g: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, g in enumerate(unique)}
    return [role[g] for g in groups]


def load_pairs(pairs: list[MaskPair], size: int) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    """Images (N,1,S,S) float in [0,1], masks (N,1,S,S) float, and the full-size masks."""
    xs, ys, full = [], [], []
    for p in pairs:
        img = read_image(p.image)
        mask = read_mask(p.mask, img.shape)
        full.append(mask)
        t = torch.from_numpy(np.stack([img, mask.astype(np.float32)]))[None]
        small = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        xs.append(small[:1])
        ys.append((small[1:] >= 0.5).float())
    return torch.stack(xs), torch.stack(ys), full


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random affine per image for image and mask, then intensity changes on the image."""
    n = x.shape[0]

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    scale, aspect, angle = u(0.6, 1.15), u(0.8, 1.25), u(-12, 12) * math.pi / 180
    sx, sy = 1 / (scale * aspect.sqrt()), aspect.sqrt() / scale  # grid coordinates: >1 zooms out
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sx, u(-0.12, 0.12)], 1), torch.stack([sin * sy, cos * sy, u(-0.12, 0.12)], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False)
    y = (F.grid_sample(y, grid, align_corners=False) >= 0.5).float()
    contrast, bright, gamma = u(0.7, 1.3), u(-0.1, 0.1), u(0.7, 1.4)
    x = ((x - 0.5) * contrast[:, None, None, None] + 0.5 + bright[:, None, None, None]).clamp(0, 1)
    return x.pow(gamma[:, None, None, None]), y


def learning_rate(peak: float, step: int, progress: float, warmup_steps: int = 30) -> float:
    """Linear warm-up, then cosine decay over ``progress`` (0..1 of the epochs or of the time
    budget, whichever runs out first), so a run cut by ``max_minutes`` still ends annealed."""
    warm = min(1.0, (step + 1) / warmup_steps)
    return peak * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum((1, 2, 3))
    dice = (2 * inter + 1) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + (1 - dice).mean()


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool masks (1.0 when both are empty)."""
    denom = pred.sum() + truth.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(pred, truth).sum() / denom)


def dice_with_ci(seg: LungSegmenter, pairs: list[MaskPair], truths: list[np.ndarray], n_resamples: int = 2000) -> dict:
    """Per-image Dice at each image's own size; mean with a patient bootstrap 95% CI."""
    from .._bootstrap import bootstrap_ci

    preds = seg.predict_masks([read_image(p.image) for p in pairs])
    scores = np.array([dice(m, t) for m, t in zip(preds, truths)])
    ci = bootstrap_ci(
        lambda idx: {"dice": float(scores[idx].mean())},
        len(scores),
        groups=[p.patient_id for p in pairs],
        n_resamples=n_resamples,
    )["dice"]
    return {
        **ci,
        "n_images": len(scores),
        "n_patients": len({p.patient_id or p.image for p in pairs}),
        "min": float(scores.min()),
        "per_image": [round(float(s), 4) for s in scores],
    }


@writes_run("cxr lungs train", "out")
def train_lungs(
    data: str | Path,
    out: str | Path,
    config: LungTrainConfig | None = None,
    images_root: str | Path | None = None,
    resume: bool = False,
    on_note: Callable[[str], None] = log.warning,
) -> dict:
    """Train into run directory ``out`` (new, or ``resume`` an unfinished one); returns the card.

    ``on_note`` receives what is left out (images without a mask), line by line."""
    cfg = config or LungTrainConfig()
    before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(data, Path(out), cfg, images_root, resume, on_note)
    finally:
        torch.set_num_threads(before)


def report_left_out(out: Path, left_out: list[tuple[str, str]], say: Callable[[str], None]) -> dict:
    """Write ``out/skipped.csv`` (a header alone: none left out), say what is left out; the card's fields."""
    atomic_write_text(out / SKIPPED, csv_text([("path", "reason"), *left_out]))
    if left_out:
        say(f"note: {len(left_out)} image(s) left out of lung training, all listed in {out / SKIPPED}:")
        for path, reason in left_out[:SHOWN]:
            say(f"  skipped {path}: {reason}")
        if len(left_out) > SHOWN:
            say(f"  ... and {len(left_out) - SHOWN} more")
    return {"skipped_count": len(left_out), "skipped_file": SKIPPED}


def _train(data, out: Path, cfg: LungTrainConfig, images_root, resume: bool, on_note) -> dict:
    """The body of :func:`train_lungs` (which sets and restores the thread count)."""
    if out.exists() and any(out.iterdir()) and not resume:
        raise UsageError(f"{out}: run directory exists and is not empty; choose a new --out or pass --resume")
    torch.manual_seed(cfg.seed)
    pairs, left_out = find_mask_pairs(data, images_root)
    roles = patient_split(pairs, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    out.mkdir(parents=True, exist_ok=True)  # after the data is read: a refused start leaves no folder
    skipped = report_left_out(out, left_out, on_note)
    atomic_write_text(
        out / "split.csv",
        csv_text(
            [
                ("image", "mask", "patient_id", "split"),
                *((p.image, p.mask, p.patient_id, r) for p, r in zip(pairs, roles)),
            ],
            neutralise=False,
        ),
    )
    part = {s: [p for p, r in zip(pairs, roles) if r == s] for s in ("train", "val", "test")}
    x_tr, y_tr, full_tr = load_pairs(part["train"], cfg.input_size)
    x_va, y_va, _ = load_pairs(part["val"], cfg.input_size)

    model = build(cfg.arch, pretrained=cfg.pretrained).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * math.ceil(len(x_tr) / cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    saved = cards.load_resume(out) if resume else None
    state = {"epoch": 0, "best": -1.0, "history": [], "step": 0, "seconds": 0.0}
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        gen.set_state(saved["gen"])
        state = {k: saved[k] for k in state}
        state["history"] = list(state["history"])
    base = {
        "arch": cfg.arch,
        "input_size": cfg.input_size,
        "threshold": 0.5,
        "config": asdict(cfg),
        "weights_source": getattr(model, "weights_source", "none"),
        "data": str(data),
        "fraction_range": fraction_range([m.mean() for m in full_tr]),
        "split": {s: len(v) for s, v in part.items()},
        "split_patients": {s: len({p.patient_id or p.image for p in v}) for s, v in part.items()},
        **skipped,
    }
    t0, spent = time.monotonic(), float(state["seconds"])

    def progress() -> float:  # of the schedule: steps or minutes, whichever runs out first
        return max(state["step"] / total_steps, (spent + time.monotonic() - t0) / max(60 * cfg.max_minutes, 1e-9))

    def after_epoch(train_loss: float, val_dice: float) -> bool:
        """Record the epoch, keep the best weights, write last.pt; True when the budget is spent."""
        epoch = state["epoch"] = state["epoch"] + 1
        history = state["history"]
        history.append({"epoch": epoch, "train_loss": round(train_loss / len(x_tr), 4), "val_dice": round(val_dice, 4)})
        log.info("lungs epoch %d: loss %.4f val dice %.4f", epoch, train_loss / len(x_tr), val_dice)
        if val_dice > state["best"]:
            state["best"] = val_dice
            cards.save_weights(out, model.state_dict())
            cards.write_card(out, {**base, "status": "training", "best_val_dice": val_dice, "history": history})
        resume_state = {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()}
        cards.save_resume(out, {**resume_state, **state, "seconds": spent + time.monotonic() - t0})
        if progress() >= 1 and epoch < cfg.epochs:
            log.warning("lungs: stopping after %d epochs, --max-minutes %.1f reached", epoch, cfg.max_minutes)
            return True
        return False

    if state["epoch"] < cfg.epochs:
        from .segmentation_module import EpochBatches, LungSegmentation, fit

        lr_at = functools.partial(learning_rate, cfg.lr)
        module = LungSegmentation(
            model, cfg.input_size, opt, seg_loss, augment, gen, lr_at, progress, state, after_epoch
        )
        train_set = torch.utils.data.TensorDataset(x_tr, y_tr)
        train = torch.utils.data.DataLoader(train_set, batch_sampler=EpochBatches(len(x_tr), cfg.batch_size, gen))
        val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_va, y_va), batch_size=32)
        quiet_lightning()
        fit(module, train, val, cfg.epochs - state["epoch"])
    best, history = state["best"], state["history"]
    seg = LungSegmenter.from_run(out) if (out / cards.CARD).exists() else None
    test_masks = [read_mask(p.mask, read_image(p.image).shape) for p in part["test"]]
    card = {
        **base,
        "status": "done",
        "best_val_dice": best,
        "history": history,
        "epochs_run": len(history),
        "train_minutes": round((spent + time.monotonic() - t0) / 60, 2),
        "test_dice": dice_with_ci(seg, part["test"], test_masks) if seg else None,
        "notice": RESEARCH_NOTICE,
    }
    cards.write_card(out, card)
    return cards.read_card(out)
