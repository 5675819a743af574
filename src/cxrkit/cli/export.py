"""``cxr export``: a thin layer over :func:`cxrkit.inference.export.export_onnx`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..run import RunDir
from ._console import CliError, console


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a run's model to ONNX",
        description="Export the run's model to ONNX (dynamic batch axis; input (B, 1, S, S) float32 "
        "after the run's preprocessing, output logits), check onnxruntime against "
        "PyTorch, and record file, input, preprocessing and opset in the model card "
        "under 'onnx'. `cxr predict --backend onnx` and `cxr serve --backend onnx` use it. A roi: lungs "
        "run made before runs carried their lung model gets a copy of it in RUN/lungs, so it can be moved whole.",
        epilog="Examples:  cxr export runs/lite0 --onnx\n"
        "           cxr export runs/lite0 --onnx --int8   (also an int8 model, calibrated on train images)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_dir",
        type=Path,
        help="run directory made by `cxr train`, or an ensemble directory (each member is exported and "
        "the ensemble checked under onnx against torch)",
    )
    p.add_argument("--onnx", action="store_true", help="export to ONNX (the only format so far)")
    p.add_argument("--out", type=Path, default=None, help="ONNX file to write (default RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write RUN_DIR/model.int8.onnx: onnxruntime static int8 quantization calibrated on "
        "--calibration train-split images, the faster of QDQ/QOperator that passes parity with "
        "the fp32 export on val images (card section 'onnx_int8')",
    )
    p.add_argument("--calibration", type=int, default=128, help="train images for int8 calibration (default 128)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..inference.export import ONNX_OPSET, ExportError, export_onnx

    if not args.onnx:
        raise CliError("say which format to export: --onnx")
    if RunDir(args.run_dir).is_ensemble():
        return _ensemble(args)
    console.print(f"[bold]»[/] exporting {args.run_dir} to ONNX")
    try:
        entry = export_onnx(args.run_dir, args.out, args.opset or ONNX_OPSET)
    except ExportError as exc:
        raise CliError(str(exc)) from None
    path = args.out or args.run_dir / entry["file"]
    console.print(
        f"wrote [bold]{path}[/] (opset {entry['opset']}, input {entry['input']['shape']}); "
        f"max |p_onnx - p_torch| = {entry['check']['max_abs_prob_diff']:.1e} on "
        f"{entry['check']['images']} check images; model card updated"
    )
    if args.int8:
        _int8(args)


def _ensemble(args: argparse.Namespace) -> None:
    from ..inference.export import ONNX_OPSET, ExportError, export_ensemble_onnx

    if args.out or args.int8:
        raise CliError(
            f"{args.run_dir} is an ensemble: each member writes its own model.onnx, so no --out; "
            "--int8 is per run (export a member with --int8)"
        )
    console.print(f"[bold]»[/] exporting each member of the ensemble {args.run_dir} to ONNX")
    try:
        entry = export_ensemble_onnx(args.run_dir, args.opset or ONNX_OPSET)
    except ExportError as exc:
        raise CliError(str(exc)) from None
    for m in entry["members"]:
        console.print(f"wrote [bold]{m['run']}/{m['file']}[/]")
    console.print(
        f"ensemble under onnx vs torch: max |dp| = {entry['check']['max_abs_prob_diff']:.1e} on "
        f"{entry['check']['images']} check images; ensemble card updated (onnx_ensemble)"
    )


def _int8(args: argparse.Namespace) -> None:
    from ..inference.quantize import QuantizationError, quantize_run

    if args.calibration < 1:
        raise CliError("--calibration must be at least 1 image")
    console.print(f"[bold]»[/] int8 quantization, calibrated on {args.calibration} train images")
    try:
        q = quantize_run(args.run_dir, calibration=args.calibration)
    except QuantizationError as exc:
        raise CliError(str(exc)) from None
    c = q["check"]
    speed = q["fp32_ms_per_batch32"] / q["candidates"][q["format"]]["ms_per_batch32"]
    console.print(
        f"wrote [bold]{args.run_dir / q['file']}[/] ({q['format']}, {speed:.2f}x the fp32 export's speed "
        f"on one thread); top-1 agreement with fp32 {c['top1_agreement']:.1%}, mean |dp| "
        f"{c['mean_abs_prob_diff']:.4f}, max {c['max_abs_prob_diff']:.3f} on {c['images']} val images"
    )
