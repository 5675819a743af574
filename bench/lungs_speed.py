"""Lung segmentation speed on 256-px images on this CPU: network variants and end-to-end masks.

Measures, in interleaved rounds (median of ``--rounds``), images/s at batch 32 on
(32, 1, S, S) inputs (S: 256, or the run's input size with ``--run``) for:

* ``unet_small`` (the default): torch NCHW, torch channels_last (2 and 1 threads), bf16
  autocast, onnxruntime (threads that sleep instead of spin);
* ``lite0_unet`` (timm tf_efficientnet_lite0 encoder + the same decoder): channels_last;
* end to end, torch and onnxruntime: ``LungSegmenter.predict_masks`` on 96 256-px PNGs of
  ../shared/data/cxr, decoded beforehand (resize, network, bilinear upsampling of the logits
  to each image's size, threshold).

    .venv/bin/python bench/lungs_speed.py [--run RUN_DIR] [--rounds 3]

Random weights unless ``--run`` (speed does not depend on the weights). Writes
bench/results/lungs_speed.json with the load average, which matters on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cxrkit.data import read_image
from cxrkit.lungs.model import build
from cxrkit.lungs.onnx import export_onnx, session
from cxrkit.lungs.segmenter import LungSegmenter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402

BATCH = 32
SIZE = 256  # set from the run's card with --run
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cxr"


def _torch_runner(model, channels_last: bool, threads: int, bf16: bool = False):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.eval().to(memory_format=fmt)
    x = torch.randn(BATCH, 1, SIZE, SIZE).contiguous(memory_format=fmt)

    def run():
        torch.set_num_threads(threads)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    return run


def _onnx_runner(model, threads: int):
    path = export_onnx(model, SIZE, Path(tempfile.mkdtemp()) / "lungs.onnx")
    sess = session(path, threads)
    x = np.random.default_rng(0).standard_normal((BATCH, 1, SIZE, SIZE)).astype(np.float32)
    return lambda: sess.run(None, {"x": x})


def _end_to_end_runner(seg: LungSegmenter, n: int):
    files = sorted((DATA / "normal").glob("*.png"))[:: max(1, len(list((DATA / "normal").glob("*.png"))) // n)][:n]
    images = [(read_image(f) * 255).round().astype(np.uint8) for f in files]

    def run():
        torch.set_num_threads(2)
        seg.predict_masks(images)

    return run, len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="a lung run (default: random unet_small weights)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lungs_speed.json")
    args = ap.parse_args()
    global SIZE
    torch.manual_seed(0)
    if args.run:
        SIZE = int(LungSegmenter.from_run(args.run).size)
    small = LungSegmenter.from_run(args.run).model if args.run else build("unet_small")
    variants = {
        "unet_small torch NCHW, 2 threads": (_torch_runner(build("unet_small"), False, 2), BATCH),
        "unet_small torch channels_last, 2 threads": (_torch_runner(small, True, 2), BATCH),
        "unet_small torch channels_last, 1 thread": (_torch_runner(small, True, 1), BATCH),
        "unet_small torch channels_last bf16 autocast, 2 threads": (_torch_runner(small, True, 2, bf16=True), BATCH),
        "unet_small onnxruntime, 2 threads": (_onnx_runner(build("unet_small"), 2), BATCH),
        "lite0_unet torch channels_last, 2 threads": (
            _torch_runner(build("lite0_unet", pretrained=True), True, 2),
            BATCH,
        ),
    }
    if DATA.is_dir() and args.run:
        for backend in ("torch", "onnx"):
            seg = LungSegmenter.from_run(args.run, backend=backend)
            variants[f"end to end {backend}: predict_masks on 256-px PNGs, 2 threads"] = _end_to_end_runner(seg, 96)
    times = {k: [] for k in variants}
    load_before = os.getloadavg()
    for name, (fn, _) in variants.items():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, (fn, n) in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(n / (time.perf_counter() - t))
    load_after = os.getloadavg()
    lines = [
        f"# Lung segmentation speed (256-px images, network at {SIZE} px, batch 32)",
        "",
        f"`{' '.join(['.venv/bin/python', *sys.argv])}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (a shared machine: numbers scale with the load).",
        "",
        "| variant | images/s (median) | all rounds |",
        "| --- | ---: | --- |",
    ]
    for name, vals in times.items():
        lines.append(f"| {name} | {statistics.median(vals):.1f} | {', '.join(f'{v:.1f}' for v in vals)} |")
    text = "\n".join(lines) + "\n"
    save_result(args.out, {"images_per_s": times}, markdown=text)
    print(text)


if __name__ == "__main__":
    main()
