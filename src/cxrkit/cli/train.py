"""``cxr train``: a thin layer over :func:`cxrkit.training.train`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .._distributed import is_launch_rank_zero
from ..training import TrainConfig
from ..training.config import CONFIG_FILE
from ._console import CliError, console, progress_bar
from .data import _fractions

DEFAULTS = TrainConfig(data="", out="")


def register(subparsers) -> None:
    d = DEFAULTS
    p = subparsers.add_parser(
        "train", help="train a classifier and write a run directory",
        description="Fine-tune an ImageNet backbone (any timm name) or train the from-scratch "
                    "residual-dense net on a dataset, with a patient- and duplicate-aware split, "
                    "augmentation, class balancing, warm-up + cosine LR, early stopping and "
                    "checkpoint selection on val only. The run directory gets config.yaml, "
                    "split.csv, model.safetensors, model_card.json, checkpoints/ and logs/.",
        epilog="Examples:\n"
               "  cxr train --data ../shared/data/cxr --out runs/lite0\n"
               "  cxr train --data DATA --model resdense_small --pretrained none --epochs 30 --out runs/rd\n"
               "  cxr train --data DATA --finetune head --epochs 5 --out runs/probe   # linear probe\n"
               "  cxr train --data DATA --finetune head --cache-features --epochs 30 --out runs/fast  # in seconds\n"
               "  cxr train --resume runs/lite0                                      # continue a run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="dataset folder or CSV (see `cxr data inspect --help`)")
    p.add_argument("--out", type=Path, help="run directory to create")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run from RUN_DIR/checkpoints/last.ckpt")
    p.add_argument("--classes", default=None, help="classes to keep, in order (default covid,viral_pneumonia,normal)")
    p.add_argument("--model", default=d.model, help=f"timm model name or resdense_* (default {d.model})")
    p.add_argument("--pretrained", default="auto", choices=["auto", "none"],
                   help="auto: ImageNet weights (offline for tf_efficientnet_lite0/1/2, else timm's hub)")
    p.add_argument("--weights", default=None, help="local .safetensors/.pt state dict to start from")
    p.add_argument("--input-size", type=int, default=None, help="image side in px (default: the backbone's)")
    p.add_argument("--contrast", default=d.contrast, choices=["percentile", "none"],
                   help="per-image contrast normalisation (default percentile 1..99)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak AdamW learning rate (default {d.lr})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--balance", default=d.balance, choices=["loss", "sampler", "none"],
                   help="class imbalance: weighted loss (default), balanced sampler, or nothing")
    p.add_argument("--finetune", default=d.finetune,
                   help="full (default), head (linear probe) or last-N (last N blocks + head)")
    p.add_argument("--cache-features", action="store_true",
                   help="with --finetune head: compute the frozen backbone's features once and train the head "
                        "on them (seconds per epoch on a CPU; no augmentation)")
    p.add_argument("--no-augment", action="store_true", help="turn augmentation off")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs on val loss")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--split-file", default=None, help="reuse a saved split.csv")
    p.add_argument("--fractions", default="0.7,0.15,0.15", help="train,val,test shares")
    p.add_argument("--accelerator", default=d.accelerator, help="auto, cpu or gpu")
    p.add_argument("--devices", default=d.devices, help="number of devices or auto")
    p.add_argument("--num-nodes", type=int, default=d.num_nodes)
    p.add_argument("--strategy", default=d.strategy, help="auto, ddp, ...")
    p.add_argument("--precision", default=None, help="e.g. 32-true, bf16-mixed (default: mixed on GPU)")
    p.add_argument("--workers", type=int, default=d.workers, help="processes decoding images")
    p.add_argument("--cache-dir", default=None, help="where decoded images are cached (default ~/.cache/cxrkit)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after this many minutes")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if not args.data or not args.out:
        raise CliError("cxr train needs --data and --out (or --resume RUN_DIR)")
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    return TrainConfig(
        data=str(args.data), out=str(args.out), classes=args.classes, model=args.model,
        pretrained=args.pretrained == "auto", weights=args.weights, input_size=args.input_size,
        contrast=args.contrast, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing, balance=args.balance, finetune=args.finetune,
        cache_features=args.cache_features,
        augment=not args.no_augment, patience=args.patience, seed=args.seed,
        split_file=args.split_file, fractions=_fractions(args.fractions),
        accelerator=args.accelerator, devices=devices, num_nodes=args.num_nodes,
        strategy=args.strategy, precision=args.precision, workers=args.workers,
        cache_dir=args.cache_dir, max_minutes=args.max_minutes)


def run(args: argparse.Namespace) -> None:
    if args.resume:
        cfg_path = args.resume / CONFIG_FILE
        if not cfg_path.is_file():
            raise CliError(f"{args.resume}: not a run directory (no {CONFIG_FILE})")
        config = dataclasses.replace(TrainConfig.from_yaml(cfg_path.read_text()), out=str(args.resume))
    else:
        config = config_from_args(args)
    from ..training import train

    if not is_launch_rank_zero():  # another process of a distributed run: rank 0 reports
        train(config, resume=bool(args.resume), progress_bar=False)
        return
    with progress_bar("preparing images") as update:
        result = train(config, resume=bool(args.resume), on_stage=lambda m: console.print(f"[bold]»[/] {m}"),
                       data_progress=update)
    card = result.card
    if card:
        v = card["val_metrics"]
        console.print(f"run [bold]{result.run_dir}[/]: val acc {v.get('val/acc', float('nan')):.4f}, "
                      f"macro-F1 {v.get('val/macro_f1', float('nan')):.4f} "
                      f"({card['training']['epochs_run']} epochs, {card['training']['wall_seconds']:.0f} s)")
