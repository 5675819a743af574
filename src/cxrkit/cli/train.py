"""``cxr train``: flags generated from :class:`~cxrkit.training.TrainConfig`, then one call to ``train``."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from rich.markup import escape

from .._distributed import is_launch_rank_zero
from ..errors import CxrkitError
from ..run import RunDir, read_card
from ..training.config import CONFIG_FILE, TrainConfig, read_config_file, resolve_config
from ._config_args import add_config_arguments, config_values
from ._console import CliError, console, err_console, plain, progress_bar, say

# Flags that may change when a run is resumed: where and how fast it runs, not what it learns.
RESUMABLE = {"accelerator", "devices", "num_nodes", "strategy", "workers", "cache_dir", "max_minutes", "epochs"}


def add_config_file_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="YAML file of TrainConfig fields, or a preset shipped in cxrkit/configs/ (default, fast, ...); "
        "flags given on the command line win over it",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier and write a run directory",
        description="Fine-tune an ImageNet backbone (any timm name) or train the from-scratch "
        "residual-dense net on a dataset, with a patient- and duplicate-aware split, "
        "augmentation, class balancing, warm-up + cosine LR, early stopping and "
        "checkpoint selection on val only. The run directory gets config.yaml (the "
        "resolved config), split.csv, model.safetensors, model_card.json, checkpoints/ and logs/.",
        epilog="Examples:\n"
        "  cxr train --data ../shared/data/cxr --out runs/lite0\n"
        "  cxr train --config fast --data DATA --out runs/quick                # a preset shipped with cxrkit\n"
        "  cxr train --config my.yaml --epochs 3 --out runs/x                  # flags win over the file\n"
        "  cxr train --data DATA --model resdense_small --pretrained none --epochs 30 --out runs/rd\n"
        "  cxr train --data DATA --finetune head --cache-features --epochs 30 --out runs/fast  # in seconds\n"
        "  cxr train --resume runs/lite0                                      # continue a run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_file_argument(p)
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run from RUN_DIR/checkpoints/last.ckpt with its saved config "
        f"(only {', '.join('--' + n.replace('_', '-') for n in sorted(RESUMABLE))} may change)",
    )
    add_config_arguments(p, TrainConfig)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < --config file < flags; with --resume, the run's saved config < resumable flags."""
    flags = config_values(args, TrainConfig)
    if args.resume:
        cfg_path = args.resume / CONFIG_FILE
        if not cfg_path.is_file():
            raise CliError(f"{args.resume}: not a run directory (no {CONFIG_FILE}); nothing to resume")
        fixed = sorted(set(flags) - RESUMABLE - {"out"})
        if fixed or args.config:
            raise CliError(
                f"--resume continues {args.resume} with its saved {CONFIG_FILE}; "
                f"{', '.join('--' + n.replace('_', '-') for n in fixed) or '--config'} cannot change "
                "(start a new run with another --out instead)"
            )
        try:
            text = cfg_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CliError(
                f"{cfg_path}: not UTF-8 text; the run's config is damaged (restore it, or start a new run)"
            ) from None
        saved = TrainConfig.from_yaml(text, str(cfg_path))
        if "epochs" not in flags and RunDir(args.resume).is_finished():
            raise CliError(_finished(args.resume, saved))
        return dataclasses.replace(saved, **flags, out=str(args.resume))
    return resolve_config(read_config_file(args.config) if args.config else None, flags)


def _finished(run_dir: Path, saved: TrainConfig) -> str:
    """A plain --resume of a finished run: nothing to continue (an early-stopped run would train one
    more epoch and rewrite its card, dropping the calibration `cxr evaluate` fitted)."""
    try:
        done = int(read_card(run_dir).training["epochs_run"])
    except (CxrkitError, KeyError, TypeError, ValueError):
        done = saved.epochs
    return (
        f"{run_dir} finished after {done} of {saved.epochs} epoch(s); its model and card are in place and nothing "
        f"was changed. To train it further, give more epochs: `cxr train --resume {run_dir} --epochs N` with N "
        f"above {done} (a new model, calibrated again at the end)"
    )


def run(args: argparse.Namespace) -> None:
    config = config_from_args(args)
    from ..training import train
    from ..training.stop import TrainingStopped
    from ..workflows.training import train_ready

    resume = bool(args.resume)
    if not is_launch_rank_zero():  # another process of a distributed run: rank 0 reports
        train(config, resume=resume, progress_bar=False)
        return
    from ._fit_lines import fit_progress

    try:
        with fit_progress() as callbacks, progress_bar("preparing images") as update:
            result = train_ready(
                config, resume=resume, on_stage=say, data_progress=update, progress_bar=not plain(), callbacks=callbacks
            )
    except TrainingStopped as stop:
        exit_stopped(stop, f"cxr train --resume {shlex.quote(config.out)}")
    card = result.card
    if card:
        v = card.val_metrics
        console.print(
            f"run [bold]{result.run_dir}[/]: val acc {v.get('val/acc', float('nan')):.4f}, "
            f"macro-F1 {v.get('val/macro_f1', float('nan')):.4f} "
            f"({card.training['epochs_run']} epochs, {card.training['wall_seconds']:.0f} s)"
        )
        n_skipped, warnings = card.data.get("skipped_count", 0), card.data.get("warnings", [])
        if n_skipped or warnings:
            console.print(
                f"[yellow]note:[/] {n_skipped} file(s) skipped ({escape(str(result.run_dir / 'skipped.csv'))}), "
                f"{len(warnings)} warning(s); both are in the model card's data section"
            )


def exit_stopped(stop, resume_command: str) -> None:
    """Say where a training stopped by a signal left its checkpoint and the command that goes on
    from it, then exit 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell would."""
    err_console.print(f"[yellow]stopped:[/] {escape(str(stop))}")
    if stop.checkpoint is not None:
        err_console.print(f"continue with: [bold]{escape(resume_command)}[/]")
    else:
        err_console.print("nothing to resume yet: start it again with the same command")
    sys.exit(stop.exit_code)
