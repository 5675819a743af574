"""``cxr lungs train`` / ``cxr lungs predict``: the lung segmenter (torch imported only when run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._meta import RESEARCH_NOTICE
from ..lungs.config import LungTrainConfig
from ._config_args import add_config_arguments, config_values


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lungs",
        help="train a lung segmenter from masks; predict lung masks and boxes",
        description="Lung fields. " + RESEARCH_NOTICE,
    )
    sub = p.add_subparsers(dest="lungs_command", required=True, metavar="SUBCOMMAND")
    t = sub.add_parser(
        "train",
        help="train a lung segmentation model on images that have masks",
        description="Train a compact U-Net (or lite0_unet) on (image, mask) pairs: a manifest CSV with "
        "file,mask[,patient_id,population] columns (e.g. lungmasks/manifest.csv), or a Kaggle v4 "
        "folder with <CLASS>/masks/. Patient-aware 70/10/20 split; the run directory gets "
        "lung_card.json, model.safetensors, split.csv and last.pt (resume). " + RESEARCH_NOTICE,
        epilog="Example:\n  cxr lungs train --data ../shared/data/lungmasks/manifest.csv --out runs/lungs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--data", required=True, type=Path, help="manifest CSV or dataset folder with masks")
    t.add_argument("--out", required=True, type=Path, help="new run directory")
    t.add_argument(
        "--images-root",
        type=Path,
        default=None,
        help="where a manifest's 'file' paths live when not beside the CSV (default: ../cxr of the CSV)",
    )
    add_config_arguments(t, LungTrainConfig)
    t.add_argument("--size", type=int, default=None, help="deprecated: use --input-size")
    t.add_argument("--resume", action="store_true", help="continue an unfinished run in --out from last.pt")
    t.set_defaults(func=_train)
    q = sub.add_parser(
        "predict",
        help="lung masks, overlays, boxes and quality flags for images",
        description="Writes OUT/masks/*.png, OUT/overlays/*.png and OUT/lungs.json (box, lung fraction, "
        "quality flag: no lung, one lung, fraction outside the training range). " + RESEARCH_NOTICE,
    )
    q.add_argument("run_dir", type=Path, help="run directory of `cxr lungs train`")
    q.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE", help="image files or folders")
    q.add_argument("--out", required=True, type=Path, help="output folder")
    q.add_argument("--margin", type=float, default=0.05, help="box margin, a fraction of the box size (default 0.05)")
    q.add_argument("--no-overlays", action="store_true", help="write masks and JSON only")
    q.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="onnx: onnxruntime (exports RUN/lungs.onnx on first use)",
    )
    q.set_defaults(func=_predict)


def _train(args) -> None:
    from ..errors import UsageError
    from ..lungs.train import train_lungs

    values = config_values(args, LungTrainConfig)
    if args.size is not None:
        print("note: --size is deprecated and will be removed; use --input-size", file=sys.stderr)
        if values.get("input_size", args.size) != args.size:
            raise UsageError(
                f"--size {args.size} and --input-size {values['input_size']} disagree; give --input-size only"
            )
        values["input_size"] = args.size
    cfg = LungTrainConfig(**values)
    card = train_lungs(args.data, args.out, cfg, images_root=args.images_root, resume=args.resume, on_note=print)
    test = card.get("test_dice") or {}
    print(
        f"lung run {args.out}: {card['epochs_run']} epochs, best val Dice {card['best_val_dice']:.3f}, "
        f"test Dice {test.get('value', float('nan')):.3f} (95% CI {test.get('lo', float('nan')):.3f}-"
        f"{test.get('hi', float('nan')):.3f}, {test.get('n_images', 0)} images). {RESEARCH_NOTICE}"
    )


def _predict(args) -> None:
    from ..data.images import is_image_file
    from ..errors import UsageError
    from ..lungs.predict import predict_to_dir

    paths = []
    for p in args.inputs:
        if p.is_dir():
            paths += sorted(f for f in p.rglob("*") if is_image_file(f))
        elif p.exists():
            paths.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    report = predict_to_dir(
        args.run_dir, paths, args.out, margin=args.margin, overlays=not args.no_overlays, backend=args.backend
    )
    rows = report["images"]
    flagged = [r for r in rows if not r.get("ok", False)]
    for r in flagged:
        print(r["error"] if "error" in r else f"{r['file']}: {r['quality']}")
    print(f"{len(rows)} images, {len(flagged)} flagged or unreadable; see {args.out / 'lungs.json'}. {RESEARCH_NOTICE}")
