"""Grad-CAM maps in bf16 vs fp32 on a trained run's real val images: are they faithful?

For RUN, the first ``--images`` val images of its split.csv, maps of the fp32 predictor's
predicted class from the same Explainer with a fp32 and a bf16 predictor
(``cxrkit.explain.cams``: bf16 autocast, target-layer output cast to fp32 for grad-cam).
Reports per method the Pearson correlation of each bf16 map with its fp32 map, the distance
between their peaks (pixels of the model input, and the share within 10% of its side), the
top-1 agreement of the two predictors, and the seconds each took (on a CPU without native
bf16 the bf16 pass is emulated and far slower: read the agreement, not the time, there).

    .venv/bin/python bench/cam_precision.py RUN [--images 32] [--methods gradcam layercam]

Writes bench/results/cam_precision.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, load_note, markdown_table, save_result, split_files  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from cxrkit.explain.cams import Explainer
    from cxrkit.explain.faithfulness import map_agreement
    from cxrkit.inference.predictor import Predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--methods", nargs="+", default=["gradcam", "layercam"])
    args = ap.parse_args()
    files, _ = split_files(args.run, "val")
    p32, pbf = (Predictor.from_run(args.run, backend="torch", precision=p) for p in ("32", "bf16"))
    images = np.stack([p32.prepare(f) for f in files[: args.images]])
    side = images.shape[-1]
    rows, out = [], {"run": str(args.run), "images": len(images), "side": side, "methods": {}}
    for method in args.methods:
        t0 = time.perf_counter()
        e32 = Explainer(p32, method).explain(images)
        t1 = time.perf_counter()
        ebf = Explainer(pbf, method).explain(images, target=e32.classes[:, 0])  # the same class's map
        t2 = time.perf_counter()
        corr, peak = map_agreement(e32.maps[:, 0], ebf.maps[:, 0])
        same = float((e32.predicted == ebf.predicted).mean())  # top-1 agreement of the two predictors
        out["methods"][method] = {
            "corr_median": float(np.median(corr)),
            "corr_min": float(corr.min()),
            "peak_px_median": float(np.median(peak)),
            "peak_within_10pct": float((peak <= 0.1 * side).mean()),
            "same_class": same,
            "fp32_s": t1 - t0,
            "bf16_s": t2 - t1,
        }
        m = out["methods"][method]
        rows.append(
            [
                method,
                f"{m['corr_median']:.3f}",
                f"{m['corr_min']:.3f}",
                f"{m['peak_px_median']:.1f}",
                f"{100 * m['peak_within_10pct']:.0f}%",
                f"{100 * same:.0f}%",
                f"{m['fp32_s']:.1f} / {m['bf16_s']:.1f}",
            ]
        )
    table = markdown_table(
        [
            "method",
            "corr. median",
            "corr. min",
            "peak dist. px (median)",
            "peaks within 10% of side",
            "same top-1",
            "s fp32 / bf16",
        ],
        rows,
    )
    text = f"{len(images)} val images of {args.run} at {side} px\n\n{table}\n\n{load_note()}"
    print(f"`{command_line()}`\n\n{text}")
    save_result(RESULTS / "cam_precision.json", out, title="Grad-CAM in bf16 vs fp32", markdown=text)


if __name__ == "__main__":
    main()
