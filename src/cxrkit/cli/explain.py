"""``cxr explain``: CAM overlays for image files, or a summary over a dataset split."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .._meta import RESEARCH_NOTICE
from ..data.files import IMAGE_SUFFIXES
from ..explain.defaults import DEFAULT_METHOD, METHOD_CLASSES, SLOW_METHODS
from ._console import CliError, console, err_console, heartbeat, progress_bar
from .predict import add_precision_argument

EXPLAIN_DIR = "explain"
MAX_ERRORS_SHOWN = 50


def register(subparsers) -> None:
    methods = ", ".join(METHOD_CLASSES)
    p = subparsers.add_parser(
        "explain",
        help="where does the model look? CAM overlays, class summaries, faithfulness",
        description="Class activation maps (pytorch_grad_cam) for a trained run. A map shows which regions "
        "raised the score of a class; it is not a diagnosis and can look plausible while the "
        "model relies on something else, so compare methods with --faithfulness before trusting "
        "one.\n\n"
        "Files: for each image (PNG, JPEG, BMP, TIFF, DICOM; folders searched recursively) write "
        "<name>.png, the map over the image at its original size with the predicted class and "
        "calibrated probability, and <name>.npy, the raw maps (K, S, S) at model input size. "
        "Unreadable files are listed with the reason; the rest go on.\n\n"
        "Summary (--summary): over a split, the mean map per true and per predicted class, the "
        "most confident correct and wrong cases per class, and the share of map energy in the "
        "lung field vs the border band; summary.json feeds the evaluation report.\n\n"
        f"Methods: {methods}. {', '.join(SLOW_METHODS)} run one forward pass per channel of the "
        "target layer (minutes per image on a CPU). eigencam is class-agnostic. " + RESEARCH_NOTICE,
        epilog="Examples:\n"
        "  cxr explain runs/lite0 scan.png scans/              # Grad-CAM of the predicted class\n"
        "  cxr explain runs/lite0 scan.dcm --all-classes --method gradcam++\n"
        "  cxr explain runs/lite0 scan.png --target-layer blocks.4   # 14x14 map instead of 7x7 at 224 px\n"
        "  cxr explain runs/lite0 --summary --faithfulness    # test split of the training data\n"
        "  cxr explain runs/lite0 --data /data/other --split all --summary",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="run directory made by `cxr train`")
    p.add_argument("images", nargs="*", type=Path, metavar="IMAGE", help="image files or folders to explain")
    p.add_argument(
        "--method", default=DEFAULT_METHOD, metavar="NAME", help=f"CAM method (default {DEFAULT_METHOD}): {methods}"
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--all-classes", action="store_true", help="one panel and map per class, not just the predicted one"
    )
    target.add_argument(
        "--class",
        dest="target_class",
        default=None,
        metavar="CLASS",
        help="explain this class instead of the predicted one",
    )
    p.add_argument(
        "--target-layer",
        default=None,
        metavar="NAME",
        help="dotted module name to take the map from, e.g. blocks.6 or stages.3 (default: the "
        "last feature map of the backbone; a wrong name lists the valid ones)",
    )
    p.add_argument(
        "--aug-smooth",
        action="store_true",
        help="average maps over brightness/contrast variants of the input (9x slower, smoother)",
    )
    p.add_argument(
        "--eigen-smooth",
        action="store_true",
        help="keep the first principal component of the weighted features (less noise)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per CAM pass (default 16)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_precision_argument(p)
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default RUN_DIR/{EXPLAIN_DIR})")
    split = p.add_argument_group("dataset summary")
    split.add_argument("--summary", action="store_true", help="summarise a dataset split instead of files")
    split.add_argument("--data", default=None, help="dataset (default: the run's training data with its split)")
    split.add_argument(
        "--split",
        default=None,
        choices=["train", "val", "test", "all"],
        help="which images (default: test for the training data, all for other data)",
    )
    split.add_argument("--cases", type=int, default=4, help="most confident correct/wrong cases shown per class")
    split.add_argument(
        "--lung-run",
        type=Path,
        default=None,
        help="run of `cxr lungs train` whose masks define the lung field of the audit and CAM shares "
        "(default: the classifier's own with roi: lungs, else the fixed central box)",
    )
    split.add_argument(
        "--faithfulness",
        nargs="*",
        default=None,
        metavar="METHOD",
        help="also score methods with ROAD (remove most/least relevant pixels first, vs random "
        "maps); no METHOD: every method but " + ", ".join(SLOW_METHODS),
    )
    split.add_argument(
        "--faithfulness-images",
        type=int,
        default=64,
        help="images (drawn at random, seeded) that the faithfulness score uses (default 64)",
    )
    split.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes decoding images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import torch

    from ..explain.cams import Explainer
    from ..inference.defaults import NETWORK_BACKEND
    from ..inference.loader import load_predictor

    if args.summary == bool(args.images):
        raise CliError("give IMAGE files/folders to explain, or --summary for a dataset split (not both)")
    if not args.summary and (args.data or args.split or args.faithfulness is not None):
        raise CliError("--data, --split and --faithfulness go with --summary")
    unknown = [m for m in args.faithfulness or [] if m not in METHOD_CLASSES]
    if unknown:
        raise CliError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_CLASSES)}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    predictor = load_predictor(args.run_dir, device, backend=NETWORK_BACKEND, precision=args.precision)
    if predictor.precision_note:
        console.print(f"note: {predictor.precision_note}")
    explainer = Explainer(
        predictor, args.method, args.target_layer, args.aug_smooth, args.eigen_smooth, args.batch_size
    )
    out = args.out or args.run_dir / EXPLAIN_DIR
    arithmetic = "bf16" if predictor.precision == "bf16" else "fp32"
    console.print(f"[bold]»[/] {args.method} on layer {explainer.layer_name} ({device}, {arithmetic})")
    with heartbeat():
        if args.summary:
            _summary(args, explainer, out)
        else:
            _files(args, explainer, out)
    console.print(f"[bold]{RESEARCH_NOTICE}[/]")


def _files(args: argparse.Namespace, explainer, out: Path) -> None:
    from ..explain.image_files import explain_files

    target = "all" if args.all_classes else _class_index(explainer.predictor.classes, args.target_class)
    with progress_bar("explaining images") as update:
        result = explain_files(explainer, args.images, out, target, update)
    if result.ignored:
        err_console.print(f"note: skipped {result.ignored} non-image file(s) in the folders given")
    console.print(f"wrote {len(result.written)} overlay(s) and map(s) to [bold]{escape(str(out))}[/]")
    if result.failures:
        console.print(f"[bold red]{len(result.failures)} file(s) could not be explained:[/]")
        for f in result.failures[:MAX_ERRORS_SHOWN]:
            console.print(f"  {f.name}: {f.reason}", markup=False)
        if len(result.failures) > MAX_ERRORS_SHOWN:
            console.print(f"  ... and {len(result.failures) - MAX_ERRORS_SHOWN} more")
    if not result.written:
        raise CliError(nothing_explained(args.images, len(result.failures), result.ignored))


def nothing_explained(paths, failed: int, ignored: int) -> str:
    """Why no overlay was written: every file failed, or there was no image file to try."""
    if failed:
        return f"no image could be explained: all {failed} file(s) failed (reasons above)"
    where = ", ".join(str(p) for p in paths)
    return (
        f"no image files in {where} ({ignored} other file(s) ignored); explain takes "
        f"image files ({', '.join(sorted(IMAGE_SUFFIXES))}, or DICOM without a suffix), or folders holding them"
    )


def _class_index(classes: list[str], name: str | None) -> int | None:
    if name is None:
        return None
    if name not in classes:
        raise CliError(f"unknown class {name!r}; the model's classes are {', '.join(classes)}")
    return classes.index(name)


def _summary(args: argparse.Namespace, explainer, out: Path) -> None:
    from ..explain.faithfulness import DEFAULT_COMPARED, compare_methods
    from ..explain.summary import explain_split, write_summary

    with progress_bar("explaining the split") as update:
        result = explain_split(
            explainer, args.data, args.split, args.workers, cases=args.cases, progress=update, lung_run=args.lung_run
        )
    faithfulness = None
    if args.faithfulness is not None:
        with progress_bar("faithfulness (ROAD)") as update:
            faithfulness = compare_methods(
                explainer.predictor,
                result.images,
                args.faithfulness or DEFAULT_COMPARED,
                args.target_layer,
                max_images=args.faithfulness_images,
                batch_size=args.batch_size,
                progress=update,
            )
    summary = write_summary(out, result, faithfulness)
    t = Table(title=f"share of map energy ({result.lung_region} vs border band)")
    for col in ("true class", "lung", "border"):
        t.add_column(col)
    for name, share in summary["lung_vs_border"].items():
        t.add_row(name, f"{share['lung']:.2f}", f"{share['border']:.2f}")
    console.print(t)
    if faithfulness:
        t = Table(title=f"faithfulness, ROAD on {faithfulness['n_images']} images (higher is more faithful)")
        for col in ("method", "ROAD", "drop, most relevant first", "drop, least relevant first"):
            t.add_column(col)
        for name, s in [*faithfulness["methods"].items(), ("random maps", faithfulness["random_maps"])]:
            t.add_row(
                name,
                f"{s['road']:.3f}",
                f"{s['drop_most_relevant_first']:.3f}",
                f"{s['drop_least_relevant_first']:.3f}",
            )
        console.print(t)
    console.print(f"wrote [bold]{escape(str(out / 'summary.json'))}[/] and {len(summary['images'])} PNG(s)")
