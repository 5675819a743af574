"""``cxr export``: a thin layer over :func:`cxrkit.inference.export.export_onnx`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._console import CliError, console


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a run's model to ONNX",
        description="Export the run's model to ONNX (dynamic batch axis; input (B, 1, S, S) float32 "
                    "after the run's preprocessing, output logits), check onnxruntime against "
                    "PyTorch, and record file, input, preprocessing and opset in the model card "
                    "under 'onnx'. `cxr predict --backend onnx` and `cxr serve --backend onnx` use it.",
        epilog="Example:  cxr export runs/lite0 --onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="run directory made by `cxr train`")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (the only format so far)")
    p.add_argument("--out", type=Path, default=None, help="ONNX file to write (default RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..inference.export import ONNX_OPSET, ExportError, export_onnx

    if not args.onnx:
        raise CliError("say which format to export: --onnx")
    console.print(f"[bold]»[/] exporting {args.run_dir} to ONNX")
    try:
        entry = export_onnx(args.run_dir, args.out, args.opset or ONNX_OPSET)
    except ExportError as exc:
        raise CliError(str(exc)) from None
    path = args.out or args.run_dir / entry["file"]
    console.print(f"wrote [bold]{path}[/] (opset {entry['opset']}, input {entry['input']['shape']}); "
                  f"max |p_onnx - p_torch| = {entry['check']['max_abs_prob_diff']:.1e} on "
                  f"{entry['check']['images']} check images; model card updated")
