"""Milliseconds per training batch of each augmentation recipe but `none`, model excluded.

Usage: python bench/augment_speed.py [--size 224] [--batch 32] [--rounds 20]
Writes bench/results/augment_speed.json. Compare with the lite0 training step (~1.1 s per batch
of 32 at 224 px on the 2-core CPU; bench/train_throughput.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from cxrkit.data.acquisition import AUGMENTS, make_augment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", default="bench/results/augment_speed.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size)
    result = {"size": args.size, "batch": args.batch, "threads": torch.get_num_threads(), "ms_per_batch": {}}
    for name in AUGMENTS[1:]:
        aug = make_augment(name)
        for _ in range(3):
            aug(x)
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            aug(x)
            times.append((time.perf_counter() - t) * 1000)
        result["ms_per_batch"][name] = {"median": round(statistics.median(times), 1), "max": round(max(times), 1)}
    save_result(args.out, result, title="Augmentation cost per batch (basic / robust / style mixing)")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
