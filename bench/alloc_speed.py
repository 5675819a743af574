"""Allocator speed: glibc default vs cxrkit's mallopt tuning vs tcmalloc, interleaved rounds.

Each measurement is a fresh child process (an allocator is chosen per process) that imports
cxrkit the way a library user does, then times, for tf_efficientnet_lite0 (1 channel, 224 px,
channels_last, random weights, torch's default threads):

* ``infer``: model-only fp32 forward at batch 32 (inference_mode), 8 batches after 2 warm-up;
* ``train``: model-only fp32 forward + backward + AdamW at batch 32, 6 steps after 2 warm-up;
* ``api``: with ``--run``, ``cxrkit.load(run).predict(files)`` on ``--images`` PNGs of the
  run's data (decode, preprocessing and model), after a warm-up call on 32 files.

Variants: ``glibc`` (CXR_NO_MALLOC_TUNING=1), ``mallopt`` (what ``import cxrkit`` does now),
``tcmalloc`` (LD_PRELOAD of libtcmalloc_minimal, what the ``cxr`` command re-execs with).

    .venv/bin/python bench/alloc_speed.py [--rounds 3] [--run /tmp/runs/lite0 --images 256]

Writes bench/results/alloc_speed.json and prints a table with ratios to tcmalloc.
"""

from __future__ import annotations

import argparse
import ctypes.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_note, markdown_table, rotations, save_result, split_files, spread, stats  # noqa: E402
from train_accuracy import model_only_throughput  # noqa: E402  (the same model-only training measure)

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("glibc", "mallopt", "tcmalloc")


def variant_env(name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CXR_NO_MALLOC_TUNING")}
    env["CXR_NO_TCMALLOC"] = "1"  # never let a child re-exec itself
    if name == "glibc":
        env["CXR_NO_MALLOC_TUNING"] = "1"
    elif name == "tcmalloc":
        env["LD_PRELOAD"] = ctypes.util.find_library("tcmalloc_minimal") or "libtcmalloc_minimal.so.4"
    return env


def child(run: str | None, n_images: int, train: bool) -> dict:
    import torch  # mallopt acts on later allocations: importing torch first changes nothing

    import cxrkit
    from cxrkit._speed import ALLOCATOR, large_blocks_are_mmapped
    from cxrkit.models import build_classifier

    out = {
        "allocator": ALLOCATOR["state"],
        "large_blocks_mmapped": large_blocks_are_mmapped(),
        "threads": torch.get_num_threads(),
    }
    model, _ = build_classifier("tf_efficientnet_lite0", 3, in_chans=1, pretrained=False)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(32, 1, 224, 224).contiguous(memory_format=torch.channels_last)
    model.eval()
    with torch.inference_mode():
        for i in range(10):
            if i == 2:
                t = time.perf_counter()
            model(x)
    out["infer"] = 32 * 8 / (time.perf_counter() - t)
    if train:
        out["train"] = model_only_throughput("tf_efficientnet_lite0", 224, 32, steps=6)
    if run:
        files = split_files(run, "test")[0]
        files = files[:: max(1, len(files) // (n_images + 32))][: n_images + 32]
        predictor = cxrkit.load(run)
        predictor.predict(files[:32])
        t = time.perf_counter()
        predictor.predict(files[32:])
        out["api"] = (len(files) - 32) / (time.perf_counter() - t)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--run", default=None, help="run directory for the cxrkit.load(run).predict measure")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--no-train", action="store_true", help="skip the training-step measure (saves CPU time)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.run, args.images, not args.no_train)))
        return
    cmd = [sys.executable, __file__, "--child", "--images", str(args.images)]
    cmd += (["--run", args.run] if args.run else []) + (["--no-train"] if args.no_train else [])
    results = {v: [] for v in VARIANTS}
    for order in rotations(VARIANTS, args.rounds):
        for v in order:
            done = subprocess.run(cmd, env=variant_env(v), capture_output=True, text=True, check=True)
            results[v].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(v, results[v][-1], flush=True)
    measures = [m for m in ("infer", "train", "api") if m in results["glibc"][0]]
    summary = {
        "variants": {
            v: {
                "allocator": results[v][0]["allocator"],
                "large_blocks_mmapped": results[v][0]["large_blocks_mmapped"],
                **{m: stats([r[m] for r in results[v]]) for m in measures},
            }
            for v in VARIANTS
        },
        "ratio_to_tcmalloc": {
            v: {m: stats([a[m] / b[m] for a, b in zip(results[v], results["tcmalloc"])]) for m in measures}
            for v in VARIANTS
        },
        "rounds": args.rounds,
        "run": args.run,
        "images": args.images,
        "note": load_note(),
    }
    rows = [
        [v, summary["variants"][v]["allocator"]]
        + [
            f"{spread([r[m] for r in results[v]])} (x{spread(summary['ratio_to_tcmalloc'][v][m]['all'], '{:.2f}')})"
            for m in measures
        ]
        for v in VARIANTS
    ]
    columns = ["variant", "state"] + [f"{m} img/s (ratio to tcmalloc)" for m in measures]
    path = save_result(
        RESULTS / "alloc_speed.json",
        summary,
        title="Allocator: glibc default vs `import cxrkit`'s mallopt vs tcmalloc",
        tables=[{"title": "img/s, median (min-max) of the rounds", "columns": columns, "rows": rows}],
    )
    print(markdown_table(columns, rows))
    print(summary["note"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
