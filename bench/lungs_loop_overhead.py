"""What Lightning would cost the lung trainer: one epoch of the same U-Net, same data, same
steps, run by the plain loop of ``cxrkit.lungs.train`` and by a Lightning ``Trainer``.

Both run ``unet_small`` at ``--size`` px, batch 16, AdamW, ``seg_loss``, channels_last, on
synthetic two-ellipse films (speed does not depend on the pixels), with ``--threads`` torch
threads, no augmentation; the Lightning side is cxrkit's own ``LungSegmentation`` module and
``fit`` (no logger, checkpointing or progress bar), without validation. Rounds alternate the
two; the median seconds per epoch (and per step) are reported, with the one-off cost of
building a Trainer and entering ``fit`` measured separately.

    .venv/bin/python bench/lungs_loop_overhead.py [--images 96] [--size 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from cxrkit._lightning import quiet_lightning
from cxrkit.lungs.model import build
from cxrkit.lungs.segmentation_module import LungSegmentation, fit
from cxrkit.lungs.segmenter import to_input
from cxrkit.lungs.train import seg_loss


def films(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    x, y = [], []
    for _ in range(n):
        cy, s = rng.uniform(0.4, 0.6), rng.uniform(0.7, 1.0)
        mask = np.zeros((size, size), bool)
        for side in (-1, 1):
            mask |= ((yy - cy) / (0.3 * s)) ** 2 + ((xx - 0.5 - side * 0.2 * s) / (0.13 * s)) ** 2 <= 1
        x.append(np.clip(0.6 - 0.3 * mask + rng.normal(0, 0.05, (size, size)), 0, 1))
        y.append(mask)
    as_t = lambda a: torch.from_numpy(np.stack(a)[:, None].astype(np.float32))  # noqa: E731
    return as_t(x), as_t(y)


def plain_epoch(model, x, y, size: int, batch: int) -> float:
    """The former own loop's steps: forward, loss, backward, AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    t0 = time.perf_counter()
    model.train()
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        loss = seg_loss(model(to_input(xb, size).contiguous(memory_format=torch.channels_last)), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def lightning_epoch(model, x, y, size: int, batch: int) -> tuple[float, float]:
    """cxrkit's LungSegmentation + Trainer without augmentation: (seconds from the first step to
    the end of the epoch's last step, seconds from Trainer() to the first step)."""
    marks = {}

    def loss(logits, target):
        marks.setdefault("first", time.perf_counter())
        return seg_loss(logits, target)

    def after_epoch(train_loss, val_dice):
        marks["end"] = time.perf_counter()
        return False

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    state = {"step": 0}
    module = LungSegmentation(
        model, size, opt, loss, lambda a, b, g: (a, b), gen, lambda s, p: 3e-3, lambda: 0.0, state, after_epoch
    )
    data = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(data, batch_size=batch)
    t0 = time.perf_counter()
    fit(module, train, torch.utils.data.DataLoader(data, batch_size=batch), 1, validate=False)
    return marks["end"] - marks["first"], marks["first"] - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("--images", 96), ("--size", 128), ("--batch", 16), ("--rounds", 3), ("--threads", 2)):
        p.add_argument(flag, type=int, default=default)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_lightning()
    x, y = films(args.images, args.size)
    steps = -(-args.images // args.batch)
    plain, light, setup = [], [], []
    for _ in range(args.rounds):
        torch.manual_seed(0)
        plain.append(
            plain_epoch(build("unet_small").to(memory_format=torch.channels_last), x, y, args.size, args.batch)
        )
        torch.manual_seed(0)
        run, start = lightning_epoch(
            build("unet_small").to(memory_format=torch.channels_last), x, y, args.size, args.batch
        )
        light.append(run)
        setup.append(start)
    med = statistics.median
    print(
        f"host: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.images} films at {args.size} px, "
        f"batch {args.batch}, {steps} steps, {args.threads} threads, {args.rounds} rounds (median)"
    )
    print(f"plain loop : {med(plain):.2f} s/epoch ({1e3 * med(plain) / steps:.0f} ms/step)  all: {plain}")
    print(
        f"Lightning  : {med(light):.2f} s/epoch ({1e3 * med(light) / steps:.0f} ms/step, first step on)  all: {light}"
    )
    print(f"Lightning Trainer() + fit() until the first step: {med(setup):.2f} s  all: {setup}")


if __name__ == "__main__":
    main()
