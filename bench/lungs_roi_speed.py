"""What ``roi: lungs`` adds to end-to-end prediction time (issue 14 target: at most +15%).

Two run directories with the same classifier weights and the same card but for the
preprocessing section: ``roi: none`` and ``roi: lungs`` (the lung run given). Each round times
``Predictor.from_run`` (card, weights and, with the ROI, the lung segmenter's onnxruntime
session) and ``Predictor.predict`` over the same PNGs of ../shared/data/cxr (decoding threads
a batch ahead of the model, as ``cxr predict`` does), the two variants interleaved (A B, B A,
...). Speed does not depend on the weights, so without ``--run`` the classifier is an untrained
``tf_efficientnet_lite0`` at 224 px (the default recipe's network and size).

    nice -n 10 .venv/bin/python bench/lungs_roi_speed.py --lung-run runs/lungs [--run RUN] [--n 128] [--rounds 3]

Writes bench/results/lungs_roi_speed.json (and .json) with the load average: this 2-core host is
shared, so read the per-round ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, load_note, markdown_table, rotations, save_result, spread  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cxr"
OUT = Path(__file__).resolve().parent / "results" / "lungs_roi_speed"


def make_runs(root: Path, lung_run: Path, run: Path | None) -> dict[str, Path]:
    """``root/none`` and ``root/lungs``: one classifier, two preprocessing sections."""
    from cxrkit.lungs.preprocess import weights_sha256
    from cxrkit.models import build_classifier, save_weights
    from cxrkit.run import ModelCard, ModelSpec, PreprocessingSpec, read_card, write_card

    plain = root / "none"
    if run is not None:
        shutil.copytree(run, plain, ignore=shutil.ignore_patterns("checkpoints", "evaluation", "*.onnx"))
    else:
        model, info = build_classifier("tf_efficientnet_lite0", 3, in_chans=1, pretrained=False)
        pre = PreprocessingSpec(input_size=224, mean=info.mean[0], std=info.std[0])
        card = ModelCard(["covid", "viral_pneumonia", "normal"], pre, ModelSpec("tf_efficientnet_lite0"))
        save_weights(plain, model)
        write_card(plain, card)
    roi = root / "lungs"
    shutil.copytree(plain, roi)
    card = read_card(roi)
    card.preprocessing.roi, card.preprocessing.lung_run = "lungs", str(lung_run.resolve())
    card.preprocessing.lung_run_sha256 = weights_sha256(lung_run)
    write_card(roi, card)
    return {"none": plain, "lungs": roi}


def sample_files(n: int) -> list[Path]:
    """``n`` PNGs, the same share from every class folder (sorted names, every k-th)."""
    folders = sorted(p for p in DATA.iterdir() if p.is_dir())
    per = -(-n // len(folders))
    files = []
    for folder in folders:
        names = sorted(folder.glob("*.png"))
        files += names[:: max(1, len(names) // per)][:per]
    return files[:n]


def time_one(run_dir: Path, files: list[Path]) -> dict:
    from cxrkit.inference import Predictor

    t0 = time.perf_counter()
    predictor = Predictor.from_run(run_dir, precision="auto")
    t1 = time.perf_counter()
    preds = predictor.predict(files)
    t2 = time.perf_counter()
    fallbacks = sum(predictor.roi_fallback(r.name) is not None for r in preds.results)
    return {"load_s": t1 - t0, "predict_s": t2 - t1, "n": len(preds.results), "fallbacks": fallbacks}


def step_ms(run_dir: Path, files: list[Path]) -> dict:
    """The preprocessing step alone, one image at a time in this thread: base vs with the ROI."""
    from cxrkit.data.images import read_gray
    from cxrkit.inference import Predictor

    pre = Predictor.from_run(run_dir).preprocessing
    grays = [read_gray(f) for f in files]
    out = {}
    for name, step in (("base", pre.base.to_uint8), ("roi", pre.to_uint8)):
        t0 = time.perf_counter()
        for g in grays:
            step(g)
        out[name] = (time.perf_counter() - t0) * 1000 / len(grays)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lung-run", type=Path, required=True)
    ap.add_argument("--run", type=Path, default=None, help="a trained classifier run (default: untrained lite0)")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    files = sample_files(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(Path(tmp), args.lung_run, args.run)
        time_one(runs["lungs"], files[:8])  # exports lungs.onnx if missing; warms the page cache
        time_one(runs["none"], files[:8])
        rounds = []
        for order in rotations(["none", "lungs"], args.rounds):
            rounds.append({name: time_one(runs[name], files) for name in order})
            r = rounds[-1]
            print({k: round(v["predict_s"], 2) for k, v in r.items()}, flush=True)
        steps = [step_ms(runs["lungs"], files) for _ in range(args.rounds)]
    ratio = [r["lungs"]["predict_s"] / r["none"]["predict_s"] for r in rounds]
    ratio_all = [
        (r["lungs"]["predict_s"] + r["lungs"]["load_s"]) / (r["none"]["predict_s"] + r["none"]["load_s"])
        for r in rounds
    ]
    rows = [
        [
            name,
            spread([r[name]["predict_s"] * 1000 / len(files) for r in rounds]),
            spread([len(files) / r[name]["predict_s"] for r in rounds]),
            spread([r[name]["load_s"] for r in rounds], "{:.2f}"),
            rounds[0][name]["fallbacks"],
        ]
        for name in ("none", "lungs")
    ]
    table = markdown_table(["roi", "ms / image (predict)", "images/s", "load s", "ROI fallbacks"], rows)
    text = (
        f"# roi: lungs, end-to-end prediction time\n\n"
        f"`{command_line()}` (niceness {os.nice(0)})\n\n"
        f"{len(files)} PNGs of ../shared/data/cxr (every class), `Predictor.predict` with decoding threads, "
        f"torch backend, precision auto; classifier: {args.run or 'untrained tf_efficientnet_lite0, 224 px'}; "
        f"median (min-max) of {args.rounds} interleaved rounds.\n\n{table}\n\n"
        f"ROI / no ROI, predict only, per round: {', '.join(f'{x:.3f}' for x in ratio)} "
        f"(median {statistics.median(ratio):.3f}); with loading: {', '.join(f'{x:.3f}' for x in ratio_all)}.\n\n"
        f"The preprocessing step alone (decoded film -> model pixels, one image at a time): "
        f"{spread([x['base'] for x in steps], '{:.1f}')} ms without the ROI, "
        f"{spread([x['roi'] for x in steps], '{:.1f}')} ms with it (segmentation, box, crop).\n\n"
        f"{load_note()}.\n"
    )
    save_result(OUT, {"rounds": rounds, "ratio": ratio, "steps_ms": steps, "files": len(files)}, markdown=text)
    print(text)


if __name__ == "__main__":
    main()
