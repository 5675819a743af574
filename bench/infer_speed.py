"""Inference speed on this CPU: model-only vs end-to-end prediction from PNG files.

For the default model (tf_efficientnet_lite0 at 224 px, random weights in a temporary run
directory) or a given run (--run), measures in one process:

* model-only throughput at batch 32: torch eager (NCHW), torch channels_last, onnxruntime;
* end-to-end ``Predictor.predict`` throughput from PNG files of ../shared/data/cxr, with the
  onnx and the torch backend (decoding and preprocessing included);
* where end-to-end time goes: decode, contrast percentiles, resize (one thread, per image);
* single-image latency (``predict`` of one file) and peak resident memory.

    .venv/bin/python bench/infer_speed.py [--run RUN_DIR] [--images 300]

Writes bench/results/infer_speed.json and prints a table. Goal: end-to-end onnxruntime
throughput >= 85% of model-only onnxruntime throughput.

What we found on a 2-core CPU (lite0 at 224 px, 256-px PNGs): onnxruntime keeps both cores
busy at ~4.7 ms/image. Decoding + preprocessing first cost ~1.7 ms/image of CPU (PNG inflate
0.75, float 1..99 percentiles 0.4, float resize 0.3), capping the ratio near 84% even with
perfect overlap (measured 79% with threads decoding a batch ahead, 72% serially). Keeping
8-bit images in uint8 (histogram percentiles, a lookup-table stretch, an 8-bit resize) cut
preprocessing to ~0.45 ms. Running one single-threaded onnxruntime pass per core (each on its
own batch) instead of one two-threaded pass gained ~6% model-only and ~8% end to end: a
two-threaded pass stalls at every barrier when a decode thread holds one of the cores. Two fixes made
the ONNX path fast at all: normalising the batch in numpy instead of torch (a torch op between
onnxruntime runs woke torch's OpenMP pool, 20-30x slower normalisation), and onnxruntime
threads that sleep instead of spin (see ``cxrkit.inference.backends.onnx_session``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from PIL import Image

from cxrkit._speed import reexec_with_tcmalloc
from cxrkit.data.images import read_gray
from cxrkit.data.transforms import Preprocessing
from cxrkit.inference.backends import onnx_input, onnx_session
from cxrkit.inference.export import export_onnx
from cxrkit.inference.predictor import Predictor
from cxrkit.models import build_classifier, save_weights
from cxrkit.run import ModelCard, ModelSpec, PreprocessingSpec, read_card, write_card

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr"
GOAL = 0.85


def make_run(root: Path, model: str, size: int) -> Path:
    """A minimal run directory (weights + model card) for an untrained ``model``."""
    net, info = build_classifier(model, 3, in_chans=1, pretrained=False)
    run = root / f"bench_{model}"
    run.mkdir(parents=True)
    save_weights(run, net)
    write_card(
        run,
        ModelCard(
            classes=["covid", "viral_pneumonia", "normal"],
            preprocessing=PreprocessingSpec(**Preprocessing(input_size=size).to_dict()),
            model=ModelSpec(name=model, in_chans=1, num_params=info.num_params),
            weights_source="random init (benchmark)",
            split={"hash": "benchmark"},
        ),
    )
    return run


def pick_images(data: Path, n: int) -> list[Path]:
    classes = sorted(d for d in data.iterdir() if d.is_dir())
    per_class = [sorted(c.glob("*.png")) for c in classes]
    files = [f for group in zip(*per_class) for f in group]  # round-robin over classes
    if len(files) < n:
        raise SystemExit(f"need {n} PNG files under {data}/<class>/, found {len(files)}")
    return files[:n]


def images_per_s(fn, n_images: int) -> float:
    t = time.perf_counter()
    fn()
    return n_images / (time.perf_counter() - t)


def model_only_fns(predictor: Predictor, images: np.ndarray, steps: int) -> dict:
    """Forward passes on one ready batch: no decoding, no preprocessing."""
    x = predictor.preprocessing.normalise(torch.from_numpy(images.copy())[:, None])
    model = predictor.model.eval()
    x_nchw, x_cl = x.contiguous(), x.contiguous(memory_format=torch.channels_last)
    session = onnx_session(predictor.run.run_dir / predictor.run.card.onnx["file"])  # the Predictor's options
    feed = {session.get_inputs()[0].name: onnx_input(predictor.preprocessing, images[:, None])}
    streams = os.cpu_count() or 1  # as Predictor runs onnx: one single-threaded pass per core

    def onnx_run():
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(lambda _: session.run(None, feed), range(steps)))

    def torch_run(memory_format, inp):
        def run():
            model.to(memory_format=memory_format)
            with torch.inference_mode():
                for _ in range(steps):
                    model(inp)

        return run

    return {
        "torch_eager": torch_run(torch.contiguous_format, x_nchw),
        "torch_channels_last": torch_run(torch.channels_last, x_cl),
        "onnxruntime": onnx_run,
    }


def breakdown(files: list[Path], pre: Preprocessing) -> dict:
    """Milliseconds per image, one thread: decode, then preprocessing (contrast + resize)."""
    t = time.perf_counter()
    grays = [read_gray(f) for f in files]
    decode = time.perf_counter() - t
    t = time.perf_counter()
    for g in grays:
        pre.to_uint8(g)
    to_uint8 = time.perf_counter() - t
    ms = 1000 / len(files)
    return {
        "decode_ms": decode * ms,
        "to_uint8_ms": to_uint8 * ms,
        "mean_pixels": float(np.mean([g.size for g in grays])),
        "decoded_dtypes": sorted({str(g.dtype) for g in grays}),
    }


def latency_ms(predictor: Predictor, file: Path, repeats: int = 20) -> dict:
    predictor.predict(file)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.predict(file)
        times.append((time.perf_counter() - t) * 1000)
    return {"median": statistics.median(times), "p90": sorted(times)[int(0.9 * len(times)) - 1]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="run directory (default: untrained lite0 at 224 px)")
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument(
        "--images",
        type=int,
        default=960,
        help="PNG files for the end-to-end runs (fewer: pipeline fill and drain weigh more)",
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=4, help="batches per model-only timing")
    p.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds")
    p.add_argument("--out", type=Path, default=RESULTS / "infer_speed.json")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or make_run(Path(tmp), args.model, args.input_size)
        t = time.perf_counter()
        if read_card(run).onnx is None:
            export_onnx(run)  # RUN_DIR/model.onnx, recorded in the card
        export_s = time.perf_counter() - t
        files = pick_images(args.data, args.images)
        # fp32 on both sides, whatever this host's "auto" would pick: the comparison is the engine
        torch_p = Predictor.from_run(run, batch_size=args.batch, backend="torch", precision="32")
        onnx_p = Predictor.from_run(run, batch_size=args.batch, backend="onnx", precision="32")
        images = np.stack([torch_p.prepare(f) for f in files[: args.batch]])

        # This host's speed swings up to 2x from one minute to the next (shared CPUs), so every
        # measurement is repeated in interleaved rounds and the end-to-end/model-only ratio is
        # taken within a round, from runs seconds apart.
        fns = model_only_fns(torch_p, images, args.steps)
        e2e_fns = {
            "onnxruntime": lambda: onnx_p.predict(files),
            "torch": lambda: torch_p.predict(files),
            "onnxruntime_no_overlap": lambda: onnx_p.predict(files, workers=0),
        }
        for fn in (*fns.values(), *e2e_fns.values()):
            fn()  # warm-up
        model: dict[str, list[float]] = {k: [] for k in fns}
        e2e: dict[str, list[float]] = {k: [] for k in e2e_fns}
        ratios = []
        for _ in range(args.rounds):
            before = images_per_s(fns["onnxruntime"], args.batch * args.steps)
            e2e["onnxruntime"].append(images_per_s(e2e_fns["onnxruntime"], len(files)))
            after = images_per_s(fns["onnxruntime"], args.batch * args.steps)
            model["onnxruntime"] += [before, after]
            ratios.append(e2e["onnxruntime"][-1] / statistics.mean([before, after]))
            for k in ("torch_eager", "torch_channels_last"):
                model[k].append(images_per_s(fns[k], args.batch * args.steps))
            for k in ("torch", "onnxruntime_no_overlap"):
                e2e[k].append(images_per_s(e2e_fns[k], len(files)))
        stages = breakdown(files[:100], torch_p.preprocessing)
        latency = {"onnxruntime": latency_ms(onnx_p, files[0]), "torch": latency_ms(torch_p, files[0])}
        parity = float(np.abs(torch_p.proba_from_uint8(images) - onnx_p.proba_from_uint8(images)).max())
        card = read_card(run)

    ratio = statistics.median(ratios)
    med = {k: statistics.median(v) for k, v in {**model, **{f"e2e_{k}": v for k, v in e2e.items()}}.items()}
    result = {
        "model": card.model.name,
        "input_size": card.preprocessing.input_size,
        "run": str(args.run) if args.run else "untrained, temporary run dir",
        "batch": args.batch,
        "images": len(files),
        "data": str(args.data),
        "rounds": args.rounds,
        "model_only_img_s": {k: {"median": med[k], "all": [round(x, 1) for x in v]} for k, v in model.items()},
        "end_to_end_img_s": {k: {"median": med[f"e2e_{k}"], "all": [round(x, 1) for x in v]} for k, v in e2e.items()},
        "end_to_end_over_model_only_onnx": {"median": ratio, "per_round": [round(r, 3) for r in ratios]},
        "goal": GOAL,
        "goal_met": ratio >= GOAL,
        "per_image_stages_one_thread_ms": stages,
        "single_image_latency_ms": latency,
        "onnx_export_s": export_s,
        "onnx_vs_torch_max_abs_prob_diff_real_images": parity,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "env": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "pillow": Image.__version__,
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(),
            "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", ""),
        },
    }
    save_result(args.out, result, title=f"Inference speed: torch vs onnxruntime ({args.model}, {args.input_size} px)")
    print(
        f"{result['model']} @ {result['input_size']} px, batch {args.batch}, {len(files)} PNG files, "
        f"{os.cpu_count()} CPUs, medians of {args.rounds} interleaved rounds"
    )
    print(f"{'':36}{'img/s':>10}")
    for k in model:
        print(f"{'model-only ' + k:36}{med[k]:10.1f}")
    for k in e2e:
        print(f"{'end-to-end predict() ' + k:36}{med['e2e_' + k]:10.1f}")
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(
        f"end-to-end / model-only (onnxruntime, same round): {ratio:.1%} "
        f"(rounds: {', '.join(f'{r:.0%}' for r in ratios)}; goal {GOAL:.0%}: {verdict})"
    )
    print("per image, one thread (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items() if k.endswith("_ms")))
    print(
        "single-image latency ms (median/p90): "
        + ", ".join(f"{k} {v['median']:.1f}/{v['p90']:.1f}" for k, v in latency.items())
    )
    print(
        f"peak RSS {result['peak_rss_mb']:.0f} MB; ONNX export {export_s:.1f} s; "
        f"max |p_onnx - p_torch| on real images {parity:.1e}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    reexec_with_tcmalloc([__file__, *sys.argv[1:]])
    sys.exit(main())
