"""``cxr predict``: a thin layer over :meth:`cxrkit.inference.Predictor.predict`."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._io import atomic_write_text
from .._meta import RESEARCH_NOTICE
from .._precision import PRECISIONS
from ..inference.defaults import BACKENDS, DEFAULT_BACKEND, DEFAULT_PRECISION, DEFAULT_THRESHOLD
from ..run import RunDir
from ._console import CliError, console, err_console, progress_bar

FORMATS = ("table", "csv", "json")
MAX_ERRORS_SHOWN = 50


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify image files or folders with a trained run",
        description="Predict class probabilities (calibrated with the run's temperature when "
        "`cxr evaluate` fitted one) for PNG, JPEG, BMP, TIFF or DICOM files; folders are "
        "searched recursively. Predictions whose top probability is below --threshold "
        "are flagged uncertain. Unreadable files are listed with the reason and the "
        "others still predicted; the exit status is 1 when any input failed. " + RESEARCH_NOTICE,
        epilog="Examples:\n  cxr predict runs/lite0 scans/ extra.dcm\n"
        "  cxr predict runs/lite0 scans/ --format csv --out predictions.csv\n"
        "  cxr predict runs/lite0 a.png --cam            # also writes Grad-CAM overlays to cam/\n"
        "  cxr predict runs/lite0 scans/ --backend onnx  # after `cxr export runs/lite0 --onnx`\n"
        "  cxr predict runs/lite0 runs/lite0_s2 scans/   # ensemble: leading run directories are members\n"
        "  cxr predict runs/ens scans/ --tta             # an ensemble directory, test-time augmentation\n"
        "  cxr predict runs/lite0 archive/ --out p.csv --devices 4 --accelerator gpu  # 4 processes\n"
        "  cxr predict runs/lite0 archive/ --out p.csv --resumable   # rerun after a crash: skips what is done\n"
        "  torchrun --nnodes 2 --nproc-per-node 4 ... -m cxrkit predict runs/lite0 archive/ --out p.csv "
        "--devices 4 --num-nodes 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_dir", type=Path, help="run directory made by `cxr train` (or an ensemble made by `cxr ensemble create`)"
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="image files or folders; leading run directories (with a model_card.json) join RUN_DIR "
        "as an ensemble: probabilities averaged, each after its run's temperature",
    )
    add_tta_argument(p)
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help="auto: the fastest export the run has that passed parity: the int8 ONNX model "
        "(`cxr export RUN --onnx --int8`), else the fp32 ONNX one (`cxr export RUN --onnx`; 1.7x torch "
        f"end to end on a 2-core CPU), else torch; or name one: torch, onnx, onnx-int8 (default {DEFAULT_BACKEND})",
    )
    add_precision_argument(p)
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"flag predictions whose top probability is below this (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument("--cam", action="store_true", help="also write a Grad-CAM overlay PNG per image")
    p.add_argument("--cam-dir", type=Path, default=Path("cam"), help="folder for --cam overlays (default cam/)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="table, csv or json (default: from the --out suffix, else table)",
    )
    p.add_argument("--out", type=Path, default=None, help="write the output to this file instead of the screen")
    p.add_argument("--workers", type=int, default=None, help="threads decoding images (default: up to 4)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    g = p.add_argument_group(
        "large jobs",
        "Share the inputs between processes (Lightning Fabric: --devices per node, --num-nodes "
        "under torchrun or SLURM) and/or make the job resumable: finished chunks are kept in "
        "OUT.parts/ until the merged --out is written, and a rerun skips them.",
    )
    g.add_argument("--devices", default="1", help="processes (devices) per node (default 1)")
    g.add_argument("--num-nodes", type=int, default=1, help="machines (launched by torchrun or SLURM; default 1)")
    g.add_argument("--accelerator", default="auto", help="auto (a GPU when there is one), cpu or gpu")
    g.add_argument("--resumable", action="store_true", help="chunked and resumable even in one process")
    g.add_argument(
        "--chunk-size", type=int, default=512, help="images per saved chunk, rounded up to whole batches (default 512)"
    )
    p.set_defaults(func=run)


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="torch backend arithmetic: auto (bf16 where the CPU/GPU computes it natively, "
        f"~1.7x faster on AVX-512 BF16 CPUs; else fp32), 32 or bf16 (default {DEFAULT_PRECISION})",
    )


def add_tta_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta",
        action="store_const",
        const="standard",
        default="none",
        help="test-time augmentation: average the probabilities of 7 views (identity, shifts +-4%%, "
        "zooms 0.92/1.08, contrast +-15%%); 7x the model time",
    )


def split_runs(run_dir: Path, inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(runs, images): leading inputs that are run directories are ensemble members.

    A folder with a model card is a model, never a folder of images to classify.
    """
    runs = [run_dir]
    while inputs and RunDir(inputs[0]).card.is_file():
        runs.append(inputs[0])
        inputs = inputs[1:]
    return runs, inputs


def load_predictor(args: argparse.Namespace, device):
    """The Predictor of ``args.run_dir``, or the ensemble of the leading run directories."""
    from ..inference.ensemble import EnsemblePredictor
    from ..inference.loader import load_predictor

    kw = dict(
        device=device,
        backend=args.backend,
        threshold=args.threshold,
        batch_size=args.batch_size,
        precision=args.precision,
        tta=args.tta,
    )
    if len(args.runs) > 1:
        return EnsemblePredictor.from_members(args.runs, **kw)
    return load_predictor(args.run_dir, **kw)


def output_format(fmt: str | None, out: Path | None) -> str:
    if fmt:
        return fmt
    suffix = out.suffix.lower().lstrip(".") if out else ""
    return suffix if suffix in ("csv", "json") else "table"


def _sharded(args: argparse.Namespace) -> bool:
    import os

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return args.resumable or args.num_nodes > 1 or str(args.devices) not in ("1", "auto") or world > 1


def run(args: argparse.Namespace) -> None:
    from ..inference.inputs import find_images

    args.runs, args.inputs = split_runs(args.run_dir, args.inputs)
    if not args.inputs:
        raise CliError(f"no images given after the run directories {', '.join(map(str, args.runs))}")
    if args.cam and (len(args.runs) > 1 or RunDir(args.run_dir).is_ensemble()):
        raise CliError("--cam explains one network; an ensemble has several: run --cam with one member run")
    fmt = output_format(args.format, args.out)
    sharded = _sharded(args)
    if sharded and (not args.out or args.cam):
        raise CliError("--devices/--num-nodes/--resumable need --out FILE (the merged result) and no --cam")
    files, missing, ignored = find_images(args.inputs)
    if not files and not missing:
        raise CliError(f"no image files in {', '.join(map(str, args.inputs))} ({ignored} other file(s) skipped)")
    if sharded:
        return _run_sharded(args, files, missing, fmt)
    predictor = load_predictor(args, _device(args.accelerator))
    for note in (predictor.backend_note, predictor.precision_note):
        if note:
            err_console.print(f"note: {note}")
    with progress_bar(f"predicting {len(files)} image(s)") as update:
        preds = predictor.predict(files, progress=update, workers=args.workers)
    preds.errors[:0] = missing
    if ignored:
        err_console.print(f"note: skipped {ignored} non-image file(s) in the folders given")
    if args.cam and preds.results:
        from ..explain.cam_png import CamOverlays

        with progress_bar("Grad-CAM overlays") as update:
            written = CamOverlays(predictor).write([Path(r.name) for r in preds.results], args.cam_dir, update)
        err_console.print(f"wrote {len(written)} Grad-CAM overlay(s) to [bold]{args.cam_dir}[/]")

    if args.out:
        atomic_write_text(args.out, render(preds, fmt, predictor, args.threshold))
        console.print(f"wrote [bold]{args.out}[/] ({len(preds.results)} predicted, {len(preds.errors)} failed)")
    elif fmt == "table":
        _print_table(console, preds, predictor.classes, args.threshold)
    else:
        sys.stdout.write(render(preds, fmt, predictor, args.threshold))
    if preds.errors:
        sys.exit(1)


def _device(accelerator: str) -> str:
    from .._distributed import cuda_wanted

    if cuda_wanted(accelerator):
        return "cuda"
    if accelerator in ("gpu", "cuda"):
        raise CliError("--accelerator gpu: no CUDA GPU is visible to PyTorch")
    return "cpu"


def _run_sharded(args: argparse.Namespace, files: list[Path], missing: list, fmt: str) -> None:
    """Every process runs this; global rank 0 merges, writes --out and reports."""
    from ..inference.sharded import launch, parts_dir, predict_sharded

    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    fabric = launch(args.accelerator, devices, args.num_nodes)
    predictor = load_predictor(args, fabric.device)

    def write(merged) -> None:
        merged.errors[:0] = missing
        atomic_write_text(args.out, render(merged, fmt, predictor, args.threshold))

    if fabric.global_rank != 0:  # progress and messages come from rank 0 only
        predict_sharded(predictor, files, args.out, fabric, args.chunk_size, args.threshold)
        return
    with progress_bar(f"predicting {len(files)} image(s) in {fabric.world_size} process(es)") as update:
        result = predict_sharded(
            predictor, files, args.out, fabric, args.chunk_size, args.threshold, write=write, progress=update
        )
    preds = result.predictions
    resumed = f"; {result.skipped} of {result.chunks} chunk(s) were done by an earlier run" if result.skipped else ""
    console.print(
        f"wrote [bold]{args.out}[/] ({len(preds.results)} predicted, {len(preds.errors)} failed; "
        f"{result.chunks} chunk(s) over {fabric.world_size} process(es){resumed}); "
        f"{parts_dir(args.out).name} removed"
    )
    if preds.errors:
        sys.exit(1)


def render(preds, fmt: str, predictor, threshold: float) -> str:
    """The document ``cxr predict`` writes: csv, json, or the table as plain text."""
    from ..inference.formats import predictions_csv, predictions_json

    if fmt == "json":
        return json.dumps(predictions_json(preds, predictor, threshold), indent=2) + "\n"
    if fmt == "csv":
        roi = predictor.roi_fallback if predictor.preprocessing.roi != "none" else None
        return predictions_csv(preds, predictor.classes, roi_fallback=roi)
    buffer = Console(record=True, width=160, file=io.StringIO())
    _print_table(buffer, preds, predictor.classes, threshold)
    return buffer.export_text()


def _print_table(out: Console, preds, classes: list[str], threshold: float) -> None:
    t = Table(title=f"predictions ({len(preds.results)} image(s))")
    t.add_column("file", overflow="fold")  # whole paths, wrapped rather than cut
    t.add_column("predicted")
    for c in classes:
        t.add_column(c, justify="right")
    for r in preds.results:
        label = f"{r.predicted_class} [yellow](uncertain)[/]" if r.uncertain else r.predicted_class
        if r.other_abnormal_flag:
            label += f" [red](other abnormal {r.other_abnormal:.2f})[/]"
        t.add_row(escape(r.name), label, *(f"{r.probabilities[c]:.3f}" for c in classes))
    if preds.results:
        out.print(t)
    n_other = sum(bool(r.other_abnormal_flag) for r in preds.results)
    if n_other:
        out.print(f"{n_other} film(s) flagged other abnormal (none of the classes): they need a reader")
    n_uncertain = sum(r.uncertain for r in preds.results)
    if n_uncertain:
        out.print(f"{n_uncertain} prediction(s) uncertain: top probability below {threshold:g}")
    if preds.errors:
        out.print(f"[bold red]{len(preds.errors)} file(s) could not be read:[/]")
        for e in preds.errors[:MAX_ERRORS_SHOWN]:
            out.print(f"  {e.name}: {e.reason}", markup=False)
        if len(preds.errors) > MAX_ERRORS_SHOWN:
            out.print(f"  ... and {len(preds.errors) - MAX_ERRORS_SHOWN} more (use --format csv or json)")
    out.print(f"[bold]{RESEARCH_NOTICE}[/]")
