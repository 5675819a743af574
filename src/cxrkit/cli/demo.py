"""``cxr demo``: the main job end to end on one dataset."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from . import data as data_cli
from ._console import CliError, console

SHARED_DATA = Path("../shared/data/cxr")
GET_DATA = (
    "No dataset found. Download the COVID-19 Radiography Database from Kaggle "
    "(https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database), unzip it, "
    "and run:  cxr demo --data PATH/TO/COVID-19_Radiography_Dataset   "
    "(or: make demo DATA=PATH). A folder of class folders or a manifest.csv works too."
)


def find_data(given: Path | None) -> Path:
    """The dataset to use: --data, else $CXR_DATA, else ../shared/data/cxr; else say where to get one."""
    for candidate in (given, os.environ.get("CXR_DATA"), SHARED_DATA):
        if candidate:
            path = Path(candidate)
            if path.exists():
                return path
            if candidate is given:
                raise CliError(f"{path}: no such dataset folder. {GET_DATA}")
    raise CliError(GET_DATA)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the main job end to end on a dataset",
        description="The main job: inspect the dataset and make the patient- and "
                    "duplicate-aware split (later: train, evaluate, explain).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder (default: $CXR_DATA, else ../shared/data/cxr)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    data_cli.add_dataset_arguments(p)
    p.set_defaults(func=run, by=None)


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    args.data = find_data(args.data)
    console.rule(f"[bold]1/1 inspect and split {args.data}")
    data_cli.inspect_to(args.data, args.out, args)
    console.print(f"demo finished in {time.perf_counter() - start:.1f} s; outputs in [bold]{args.out}[/]")
