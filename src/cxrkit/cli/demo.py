"""``cxr demo``: the main job end to end (:func:`cxrkit.workflows.run_demo`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..training.config import DEMO_DEFAULTS, TrainConfig, read_config_file, resolve_config
from . import data as data_cli
from ._config_args import add_config_arguments, config_values
from ._console import CliError, console, plain, progress_bar, say
from .train import add_config_file_argument, exit_stopped

SHARED_DATA = Path("../shared/data/cxr")
# trained beside it when present: adult AP/PA normals and adult pneumonias (issue 26's recipe)
SHARED_EXTRA = Path("../shared/data/nih")
GET_DATA = (
    "No dataset found. Download the COVID-19 Radiography Database from Kaggle "
    "(https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database), unzip it, "
    "and run:  cxr demo --data PATH/TO/COVID-19_Radiography_Dataset   "
    "(or: make demo DATA=PATH). A folder of class folders or a manifest.csv works too."
)


def find_data(given) -> str | list[str]:
    """The dataset(s) to use: --data (one or several), else $CXR_DATA, else ../shared/data/cxr
    (with ../shared/data/nih beside it when present); else say where to get one."""
    if given:
        paths = [Path(g) for g in (given if isinstance(given, list) else [given])]
        for path in paths:
            if not path.exists():
                raise CliError(f"{path}: no such dataset folder. {GET_DATA}")
        return [str(p) for p in paths] if len(paths) > 1 else str(paths[0])
    if os.environ.get("CXR_DATA") and Path(os.environ["CXR_DATA"]).exists():
        return os.environ["CXR_DATA"]
    if SHARED_DATA.exists():
        return [str(SHARED_DATA), str(SHARED_EXTRA)] if SHARED_EXTRA.exists() else str(SHARED_DATA)
    raise CliError(GET_DATA)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the main job end to end on a dataset",
        description="The main job: inspect the dataset and make the patient- and duplicate-aware "
        "split; train the default model; evaluate it on the test split with CIs, "
        "calibration, subgroups, the shortcut audit and Grad-CAM class summaries; "
        "write report.html. A finished run in --out is reused, an interrupted one resumed. "
        "Every `cxr train` option and --config work here too.",
        epilog="Examples:\n  cxr demo                                   # ../shared/data/cxr (+ nih) or $CXR_DATA\n"
        "  cxr demo --data DATA --out runs/demo2 --config fast   # a quick look",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/demo"),
        help="output folder: inspect.json, split.csv, model/, report/ (default runs/demo)",
    )
    p.add_argument(
        "--by",
        nargs="+",
        default=["population", "subsource"],
        metavar="COLUMN",
        help="metadata columns for subgroup results and the audit, used where present (default population subsource)",
    )
    add_config_file_argument(p)
    add_config_arguments(p, TrainConfig, skip=("out", "split_file"), defaults=DEMO_DEFAULTS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..evaluation.report import render_markdown
    from ..training.stop import TrainingStopped
    from ..workflows import run_demo
    from ._fit_lines import fit_progress

    flags = config_values(args, TrainConfig)
    from_file = read_config_file(args.config) if args.config else {}
    flags["data"] = find_data(flags.get("data") or from_file.get("data"))
    config = resolve_config(from_file, flags, base={**DEMO_DEFAULTS, "out": str(args.out / "model")})
    try:
        with fit_progress() as callbacks, progress_bar("images") as update:
            result = run_demo(
                config,
                args.out,
                args.by,
                on_stage=say,
                progress=update,
                train_progress_bar=not plain(),
                train_callbacks=callbacks,
            )
    except TrainingStopped as stop:
        exit_stopped(stop, "the same cxr demo command (its training resumes)")
    data_cli.print_report(result.inspect)
    console.print(render_markdown(result.evaluated.evaluation))
    console.print(
        f"demo finished in {result.minutes:.1f} min; report: [bold]{result.evaluated.files.get('report.html')}[/]"
    )
