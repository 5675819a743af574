"""Explanation speed on this CPU: CAM maps per second at batch 1 and batch 16.

For the default model (tf_efficientnet_lite0) and resdense_small at 224 px with random
weights (speed does not depend on training), through the same path ``cxr explain`` uses
(Explainer: prediction, then one forward and backward pass per batch), method gradcam unless
--methods says otherwise. Best of --repeats timed calls after a warm-up.

    .venv/bin/python bench/explain_speed.py [--methods gradcam layercam] [--repeats 3] [--threads 1]

Run it on an idle machine: with another busy process, torch's worker threads wait on each
other and small batches slow down many times over (measured here: resdense_small batch 1,
0.5 maps/s with 2 threads beside a busy process vs 27 maps/s with 1 thread).

Writes bench/results/explain_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cxrkit._speed import reexec_with_tcmalloc
from cxrkit.data.transforms import Preprocessing
from cxrkit.explain.cams import Explainer
from cxrkit.inference.predictor import Predictor
from cxrkit.models import LoadedRun, build_classifier
from cxrkit.run import ModelCard, ModelSpec, PreprocessingSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MODELS = ("tf_efficientnet_lite0", "resdense_small")
BATCHES = (1, 16)
SIZE = 224
CLASSES = ["covid", "viral_pneumonia", "normal"]


def predictor_for(model_name: str) -> Predictor:
    model, _ = build_classifier(model_name, len(CLASSES), in_chans=1, pretrained=False)
    pre = Preprocessing(input_size=SIZE)
    card = ModelCard(list(CLASSES), PreprocessingSpec(**pre.to_dict()), ModelSpec(name=model_name))
    # fp32, as its results were measured
    return Predictor(LoadedRun(Path(model_name), model, card, list(CLASSES), pre), precision="32")


def maps_per_second(explainer: Explainer, images: np.ndarray, repeats: int) -> float:
    explainer.explain(images)  # warm-up: allocator, thread pool, oneDNN kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        explainer.explain(images)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["gradcam"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    reexec_with_tcmalloc([__file__, *sys.argv[1:]])
    if args.threads:
        torch.set_num_threads(args.threads)

    images = (np.random.default_rng(0).random((max(BATCHES), SIZE, SIZE)) * 255).astype(np.uint8)
    rows = []
    for model_name in MODELS:
        predictor = predictor_for(model_name)
        for method in args.methods:
            for batch in BATCHES:
                explainer = Explainer(predictor, method, batch_size=batch)
                rate = maps_per_second(explainer, images[:batch], args.repeats)
                rows.append(
                    {
                        "model": model_name,
                        "method": method,
                        "target_layer": explainer.layer_name,
                        "batch": batch,
                        "maps_per_second": round(rate, 2),
                    }
                )
                print(
                    f"{model_name:22s} {method:10s} {explainer.layer_name:10s} batch {batch:2d}: {rate:7.2f} maps/s",
                    flush=True,
                )
    result = {
        "what": "CAM maps per second (prediction + CAM) for random uint8 images at 224 px, best of "
        f"{args.repeats} after a warm-up; random weights",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", ""),
        "results": rows,
    }
    path = save_result(RESULTS / "explain_speed.json", result, title="Grad-CAM speed")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
