"""What Lightning would cost the lung trainer: one epoch of the same U-Net, same data, same
steps, run by the plain loop of ``cxrkit.lungs.train`` and by a Lightning ``Trainer``.

Both run ``unet_small`` at ``--size`` px, batch 16, AdamW, ``seg_loss``, channels_last, on
synthetic two-ellipse films (speed does not depend on the pixels), with ``--threads`` torch
threads; Lightning without logger, checkpointing or progress bar (its leanest setting). Rounds
alternate the two, and the median seconds per epoch (and per step) are reported, with the
one-off cost of building a Trainer and entering ``fit`` measured separately.

    .venv/bin/python bench/lungs_loop_overhead.py [--images 96] [--size 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import numpy as np
import torch

from cxrkit.lungs.model import build
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


def plain_epoch(model, opt, x, y, size: int, batch: int) -> float:
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
    """(seconds of the epoch's steps, seconds from Trainer() to the first step)."""
    import lightning as L

    marks = {}

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, b, _):
            marks.setdefault("first", time.perf_counter())
            xb, yb = b
            return seg_loss(self.net(to_input(xb, size).contiguous(memory_format=torch.channels_last)), yb)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=3e-3, weight_decay=1e-4)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
    t0 = time.perf_counter()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), loader)
    end = time.perf_counter()
    return end - marks["first"], marks["first"] - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    x, y = films(args.images, args.size)
    steps = -(-args.images // args.batch)
    plain, light, setup = [], [], []
    for _ in range(args.rounds):
        torch.manual_seed(0)
        model = build("unet_small").to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        plain.append(plain_epoch(model, opt, x, y, args.size, args.batch))
        torch.manual_seed(0)
        model = build("unet_small").to(memory_format=torch.channels_last)
        run, start = lightning_epoch(model, x, y, args.size, args.batch)
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
