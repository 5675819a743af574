"""Training throughput on this CPU: Lightning end to end vs model-only forward+backward.

End to end = what ``cxr train`` runs per step: batches from the memory-mapped image cache,
augmentation and normalisation, forward, loss, backward, AdamW and LR schedule, logging.
Model-only = forward + backward + AdamW on a random tensor of the same shape. Raw + augment =
the model-only step on real cached uint8 batches with the recipe's augmentation and
normalisation (what Lightning adds that is learning). Parts = seconds per batch of each piece
of the raw step (augment, forward + loss, backward, AdamW), timed separately. Measured in
interleaved rounds on the same process (this host's speed drifts), on real cached images of
../shared/data/cxr, without validation. Goal (issue 15): end to end >= 90% of model-only.
The allocator is what ``import cxrkit`` sets (cxrkit._speed); ``--tcmalloc`` re-execs with it.

    .venv/bin/python bench/train_throughput.py [--model tf_efficientnet_lite0] [--rounds 3] [--tcmalloc]

Writes bench/results/train_throughput_<model>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from cxrkit._speed import ALLOCATOR, reexec_with_tcmalloc
from cxrkit.data.cache import cached_images
from cxrkit.data.prepare import prepare
from cxrkit.data.transforms import BatchAugment, Preprocessing
from cxrkit.models import build_classifier
from cxrkit.training.datamodule import CxrDataModule
from cxrkit.training.module import CxrClassifier

sys.path.insert(0, str(Path(__file__).parent))
from _common import save_result  # noqa: E402
from train_accuracy import model_only_throughput  # noqa: E402  (the same model-only measure)

RESULTS = Path(__file__).parent / "results"
GOAL = 0.90


class StepTimer(L.Callback):
    """Images/s from the end of batch ``skip`` to the end of the last batch (warm-up excluded)."""

    def __init__(self, skip: int = 2):
        self.skip, self.rate = skip, float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.skip:
            self._start, self._n = time.perf_counter(), 0
        elif batch_idx > self.skip:
            self._n += len(batch[1])
            self.rate = self._n / (time.perf_counter() - self._start)


def raw_step_parts(
    model: torch.nn.Module,
    pre: Preprocessing,
    images: np.ndarray,
    labels: np.ndarray,
    idx: np.ndarray,
    batch: int,
    steps: int,
) -> tuple[float, dict[str, float]]:
    """Images/s of the raw step with augmentation, and median seconds per batch of each part."""
    model = model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    augment, parts = BatchAugment(), {"augment": [], "forward+loss": [], "backward": [], "adamw": []}
    total = 0.0
    for i in range(steps + 2):
        pick = idx[(i * batch) % len(idx) :][:batch]
        t0 = time.perf_counter()
        x = augment(torch.from_numpy(np.asarray(images[pick]))[:, None].float().div_(255.0))
        x = pre.normalise(x).contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), torch.as_tensor(labels[pick]), label_smoothing=0.1)
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if i >= 2:
            total += t4 - t0
            for k, a, b in (("augment", t0, t1), ("forward+loss", t1, t2), ("backward", t2, t3), ("adamw", t3, t4)):
                parts[k].append(b - a)
    return batch * steps / total, {k: statistics.median(v) for k, v in parts.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/cxr"))
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=12, help="training steps per end-to-end measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tcmalloc", action="store_true", help="re-exec with tcmalloc preloaded (the old cxr default)")
    args = p.parse_args(argv)

    prep = prepare(args.data, None, workers=os.cpu_count() or 1)
    model, info = build_classifier(args.model, 3, in_chans=1, pretrained=False)
    pre = Preprocessing(input_size=info.input_size[-1], mean=info.mean[0], std=info.std[0])
    images = cached_images(prep.dataset, pre, workers=os.cpu_count() or 1)
    train_idx = np.nonzero(np.asarray(prep.split.assignment) == "train")[0][: args.batch_size * (args.steps + 1)]
    dm = CxrDataModule(images, prep.dataset.labels, train_idx, train_idx[:1], args.batch_size)
    module = CxrClassifier(
        model.to(memory_format=torch.channels_last),
        list(prep.dataset.classes),
        pre.to_dict(),
        [1.0] * len(prep.dataset.classes),
    )

    def end_to_end() -> float:
        timer = StepTimer()
        trainer = L.Trainer(
            max_epochs=1,
            limit_train_batches=args.steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        trainer.fit(module, datamodule=dm)
        return timer.rate

    labels = np.asarray(prep.dataset.labels)
    raw_model, _ = build_classifier(args.model, len(prep.dataset.classes), in_chans=1, pretrained=False)
    raw_model = raw_model.to(memory_format=torch.channels_last)
    e2e, model_only, ratios, raw_aug, parts = [], [], [], [], []
    for _ in range(args.rounds):
        e2e.append(end_to_end())
        model_only.append(model_only_throughput(args.model, pre.input_size, args.batch_size))
        rate, part = raw_step_parts(raw_model, pre, images, labels, train_idx, args.batch_size, args.steps)
        raw_aug.append(rate)
        parts.append(part)
        ratios.append(e2e[-1] / model_only[-1])
    ratio = statistics.median(ratios)
    part_s = {k: round(statistics.median(p[k] for p in parts), 4) for k in parts[0]}
    result = {
        "model": args.model,
        "input_size": pre.input_size,
        "batch": args.batch_size,
        "steps": args.steps,
        "end_to_end_img_s": [round(x, 2) for x in e2e],
        "model_only_img_s": [round(x, 2) for x in model_only],
        "raw_with_augment_img_s": [round(x, 2) for x in raw_aug],
        "end_to_end_over_raw_with_augment": [round(a / b, 3) for a, b in zip(e2e, raw_aug)],
        "raw_step_parts_s_per_batch": part_s,
        "ratio_per_round": [round(r, 3) for r in ratios],
        "ratio_median": round(ratio, 3),
        "goal": GOAL,
        "goal_met": ratio >= GOAL,
        "torch_threads": torch.get_num_threads(),
        "allocator": ALLOCATOR["state"],
        "loadavg_at_end": os.getloadavg(),
    }
    path = save_result(
        RESULTS / f"train_throughput_{args.model}.json",
        result,
        title=f"Training throughput: end to end vs the raw step ({args.model})",
    )
    print(
        f"{args.model} @ {pre.input_size} px, batch {args.batch_size}: end to end "
        f"{statistics.median(e2e):.1f} img/s, model-only {statistics.median(model_only):.1f} img/s, "
        f"ratio {ratio:.1%} (rounds {', '.join(f'{r:.0%}' for r in ratios)}; goal {GOAL:.0%}: "
        f"{'met' if ratio >= GOAL else 'NOT met'})"
    )
    print(
        f"raw step + augmentation {statistics.median(raw_aug):.1f} img/s; parts (s/batch): "
        + ", ".join(f"{k} {v:.3f}" for k, v in part_s.items())
        + f"; allocator {ALLOCATOR['state']}"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    if "--tcmalloc" in sys.argv:
        reexec_with_tcmalloc([__file__, *sys.argv[1:]])
    main()
