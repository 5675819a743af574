"""Train a model on ../shared/data/cxr on this CPU and report test-split accuracy with CIs.

Also measures whether data loading keeps up: end-to-end training throughput (Lightning,
cached images, augmentation) against model-only forward+backward throughput measured in
the same process on random tensors of the same shape.

    .venv/bin/python bench/train_accuracy.py --model tf_efficientnet_lite0 --epochs 12

Writes bench/results/train_<model>.json and prints a table. Never tunes on the test split:
checkpoint selection and early stopping use val only; test is read once at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch

from cxrkit._speed import reexec_with_tcmalloc
from cxrkit.evaluation import summarize
from cxrkit.inference import Predictor
from cxrkit.inference.splits import predict_split
from cxrkit.models import build_classifier
from cxrkit.training import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402

RESULTS = Path(__file__).parent / "results"


class EpochTimer(L.Callback):
    """Seconds from the start of each training epoch to the end of its last batch (no validation)."""

    def __init__(self):
        self.seconds: list[float] = []
        self.images: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start, self._last, self._n = time.perf_counter(), None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._last, self._n = time.perf_counter(), self._n + len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module):
        if self._last is not None:
            self.seconds.append(self._last - self._start)
            self.images.append(self._n)


def model_only_throughput(name: str, size: int, batch: int, steps: int = 8) -> float:
    """Images/s of forward+backward+AdamW step on random tensors (no data loading)."""
    model, _ = build_classifier(name, 3, in_chans=1, pretrained=False)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (batch,))
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/cxr"))
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--pretrained", default="auto", choices=["auto", "none"])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--out", default=None, help="run directory (default runs/bench_<model>)")
    p.add_argument("--tag", default="", help="suffix for the results file")
    args = p.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    out = Path(args.out or f"runs/bench_{args.model}{args.tag}")
    config = TrainConfig(
        data=args.data,
        out=str(out),
        model=args.model,
        pretrained=args.pretrained == "auto",
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        input_size=args.input_size,
        patience=args.patience,
        max_minutes=args.max_minutes,
    )
    timer = EpochTimer()
    start = time.perf_counter()
    result = train(config, progress_bar=sys.stderr.isatty(), callbacks=(timer,))
    train_seconds = time.perf_counter() - start
    size = result.card["preprocessing"]["input_size"]
    steady = list(zip(timer.seconds, timer.images))[1:] or list(zip(timer.seconds, timer.images))
    e2e = statistics.median(n / s for s, n in steady)
    model_only = model_only_throughput(args.model, size, args.batch_size)

    preds = predict_split(Predictor.from_run(out, backend="torch", precision="32"), split="test")
    summary = summarize(preds.y_true, preds.probs(), preds.classes, groups=preds.patient_groups)
    total_seconds = time.perf_counter() - start
    m = summary["metrics"]
    report = {
        "model": args.model,
        "input_size": size,
        "epochs_run": result.card["training"]["epochs_run"],
        "weights_source": result.card["weights_source"],
        "config": config.to_yaml(),
        "torch_threads": torch.get_num_threads(),
        "wall_seconds_train": round(train_seconds, 1),
        "wall_seconds_total": round(total_seconds, 1),
        "throughput_img_s": {
            "end_to_end_train": round(e2e, 1),
            "model_only_fwd_bwd": round(model_only, 1),
            "ratio": round(e2e / model_only, 3),
        },
        "val_metrics": result.card["val_metrics"],
        "test": summary,
        "machine": {
            "cpu_count": __import__("os").cpu_count(),
            "tcmalloc": "tcmalloc" in __import__("os").environ.get("LD_PRELOAD", ""),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    path = save_result(
        RESULTS / f"train_{args.model}{args.tag}.json",
        report,
        title=f"Training {args.model} on the patient-disjoint split",
    )

    def fmt(key):
        v = m[key]
        return f"{100 * v['value']:.2f}% [{100 * v['lo']:.2f}, {100 * v['hi']:.2f}]"

    print(
        f"\n{args.model} @ {size}px, {report['epochs_run']} epochs, {train_seconds / 60:.1f} min training, "
        f"{total_seconds / 60:.1f} min total"
    )
    print(
        f"test images: {summary['n_images']} (bootstrap over patients, {summary['bootstrap']['resamples']} resamples)"
    )
    print(f"  accuracy            {fmt('accuracy')}")
    print(f"  macro-F1            {fmt('macro_f1')}")
    for c in preds.classes:
        print(f"  sensitivity {c:<16}{fmt('sensitivity/' + c)}")
    print(f"throughput: end-to-end {e2e:.1f} img/s, model-only {model_only:.1f} img/s (ratio {e2e / model_only:.2f})")
    print(json.dumps(summary["confusion"]["counts"]))
    print(f"wrote {path}")


if __name__ == "__main__":
    reexec_with_tcmalloc([__file__, *sys.argv[1:]])
    main()
