"""fp32 vs bf16 vs int8 on a run's real test split: metrics side by side, agreement, speed.

For RUN (trained with ``cxr train``; ``cxr export RUN --onnx --int8`` is run first if the int8
model is missing), on the test images of its split.csv:

* probabilities of torch fp32, torch bf16 (autocast), ONNX fp32 and ONNX int8, with the run's
  temperature;
* accuracy, macro-F1 and per-class sensitivity of each, with the fp32 model's patient-level
  bootstrap 95% CI (cxrkit.evaluation), and whether each variant's value lies inside it;
* top-1 agreement with torch fp32 (goal >= 99.5%) and max/mean |p - p_fp32|;
* ``--int8-file F``: test that int8 file instead of the card's (one that failed the gate);
* model-only throughput (uint8 batches of 32 -> logits, as the Predictor runs each backend) in
  interleaved rounds, with the ratio to torch fp32 per round.

bf16 on a CPU without native bf16 (no avx512_bf16/amx_bf16) is emulated and >10x slower:
``--bf16-images N`` limits it to the first N test images (its metrics are then on those).

    .venv/bin/python bench/precision_parity.py RUN [--rounds 3] [--bf16-images N]

Writes bench/results/precision_parity.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_note, markdown_table, rotations, save_result, split_files, spread, stats  # noqa: E402

RESULTS = Path(__file__).parent / "results"
GOAL_AGREEMENT = 0.995


def backends(run: str, int8_file: str | None) -> dict:
    """name -> (forward(uint8 batch (B,1,S,S)) -> logits, streams)."""
    import torch

    import cxrkit
    from cxrkit._precision import autocast
    from cxrkit.inference.backends import OnnxBackend, onnx_session
    from cxrkit.inference.quantize import OnnxInt8Backend

    torch_p = cxrkit.load(run, backend="torch", precision="32")  # the network itself, in fp32 (autocast below)
    model = torch_p.model

    def torch_forward(precision):
        def forward(batch):
            x = torch_p.model_input(batch[:, 0])
            with torch.inference_mode(), autocast(precision):
                return model(x).float().numpy()

        return forward

    onnx_run = cxrkit.load(run, backend="onnx").run
    fp32 = OnnxBackend(onnx_run)
    if int8_file:  # a file the card does not list (e.g. one that failed the export's parity gate)
        int8 = OnnxBackend.__new__(OnnxBackend)
        int8.__dict__.update(fp32.__dict__, session=onnx_session(int8_file))
    else:
        int8 = OnnxInt8Backend(onnx_run)
    return {
        "torch fp32": (torch_forward("32"), 1),
        "torch bf16": (torch_forward("bf16"), 1),
        "onnx fp32": (fp32.forward, fp32.streams),
        "onnx int8": (int8.forward, int8.streams),
    }


def logits_of(forward, streams: int, images: np.ndarray, batch: int = 32) -> np.ndarray:
    chunks = [images[i : i + batch][:, None] for i in range(0, len(images), batch)]
    with ThreadPoolExecutor(streams) as pool:
        return np.concatenate(list(pool.map(forward, chunks)))


def softmax(logits: np.ndarray, t: float) -> np.ndarray:
    z = logits / t
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bf16-images", type=int, default=None, help="test images for bf16 (default all)")
    p.add_argument("--int8-file", default=None, help="an int8 ONNX file to test instead of the card's")
    p.add_argument("--speed-batches", type=int, default=4, help="batches of 32 per speed measurement")
    args = p.parse_args(argv)

    import cxrkit
    from cxrkit._precision import resolve_precision
    from cxrkit.evaluation.bootstrap import bootstrap_ci
    from cxrkit.evaluation.metrics import classification_metrics
    from cxrkit.inference.quantize import CARD_SECTION, QuantizationError, quantize_run

    card = json.loads((Path(args.run) / "model_card.json").read_text())
    gate = "passed" if CARD_SECTION in card else None
    if gate is None and not args.int8_file:
        failed = Path(tempfile.mkdtemp(prefix="int8-")) / "failed_int8.onnx"
        try:
            quantize_run(args.run, keep_failed=failed)
            gate = "passed"
        except QuantizationError as exc:  # measure the failing candidate anyway, and say so
            args.int8_file, gate = str(failed), f"FAILED: {exc}"
            print(f"int8 failed the export gate: {exc}", flush=True)
    files, labels = split_files(args.run, "test")
    # fp32 torch: the reference every engine is held to
    predictor = cxrkit.load(args.run, backend="torch", precision="32")
    classes, t = predictor.classes, predictor.temperature
    keep = [i for i, lab in enumerate(labels) if lab in classes]
    images = np.stack([predictor.prepare(files[i]) for i in keep])
    y = np.array([classes.index(labels[i]) for i in keep])
    engines = backends(args.run, args.int8_file)
    n_of = {name: len(images) for name in engines}
    if args.bf16_images:
        n_of["torch bf16"] = min(args.bf16_images, len(images))
    probs = {}
    for name, (forward, streams) in engines.items():
        start = time.perf_counter()
        probs[name] = softmax(logits_of(forward, streams, images[: n_of[name]]), t)
        print(f"{name}: {n_of[name]} images in {time.perf_counter() - start:.0f} s", flush=True)

    ref = probs["torch fp32"]
    keys = ["accuracy", "macro_f1"] + [f"sensitivity/{c}" for c in classes]
    ci = bootstrap_ci(lambda idx: {k: classification_metrics(y[idx], ref[idx], classes)[k] for k in keys}, len(y))
    table, rows = {}, []
    for name, pr in probs.items():
        n = len(pr)
        m = classification_metrics(y[:n], pr, classes)
        diff = np.abs(pr - ref[:n])
        table[name] = {
            "images": n,
            **{k: m[k] for k in keys},
            "inside_fp32_ci": all(ci[k]["lo"] <= m[k] <= ci[k]["hi"] for k in keys),
            "top1_agreement": float((pr.argmax(1) == ref[:n].argmax(1)).mean()),
            "max_abs_prob_diff": float(diff.max()),
            "mean_abs_prob_diff": float(diff.mean()),
        }
        r = table[name]
        rows.append(
            [name, n]
            + [f"{r[k]:.3f}" for k in keys]
            + [
                r["inside_fp32_ci"],
                f"{r['top1_agreement']:.2%}",
                f"{r['max_abs_prob_diff']:.4f}",
                f"{r['mean_abs_prob_diff']:.5f}",
            ]
        )
    rows.append(["fp32 95% CI", len(y)] + [f"{ci[k]['lo']:.3f}-{ci[k]['hi']:.3f}" for k in keys] + [""] * 4)

    speed = {name: [] for name in engines}
    batch = images[: 32 * args.speed_batches]
    for order in rotations(list(engines), args.rounds):
        for name in order:
            forward, streams = engines[name]
            logits_of(forward, streams, batch[:32])  # warm-up
            start = time.perf_counter()
            logits_of(forward, streams, batch)
            speed[name].append(len(batch) / (time.perf_counter() - start))
    ratios = {name: [a / b for a, b in zip(v, speed["torch fp32"])] for name, v in speed.items()}
    result = {
        "run": args.run,
        "classes": classes,
        "test_images": len(y),
        "metrics": table,
        "fp32_ci": ci,
        "model_only_img_s": {k: stats(v) for k, v in speed.items()},
        "ratio_to_torch_fp32": {k: stats(v) for k, v in ratios.items()},
        "auto_precision_here": resolve_precision("auto", "cpu"),
        "goal_top1_agreement": GOAL_AGREEMENT,
        "note": load_note(),
    }
    tables = [
        {
            "title": "Agreement with fp32 on the test images",
            "columns": ["variant", "images"] + keys + ["inside fp32 CI", "top-1 agreement", "max |dp|", "mean |dp|"],
            "rows": rows,
        },
        {
            "title": "Model-only speed",
            "columns": ["variant", "img/s median (min-max)", "ratio to torch fp32"],
            "rows": [[k, spread(speed[k]), spread(ratios[k], "{:.2f}")] for k in engines],
        },
    ]
    path = save_result(RESULTS / "precision_parity.json", result, title="bf16 and int8 inference", tables=tables)
    for table in tables:
        print(markdown_table(table["columns"], table["rows"]), end="\n\n")
    print(result["note"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
