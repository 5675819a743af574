"""``cxr ensemble create``: a thin layer over :func:`cxrkit.inference.ensemble.create_ensemble`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._console import console


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="combine trained runs into an ensemble directory",
        description="An ensemble directory lists member runs (ensemble.json: paths relative to it, split "
        "hashes, classes) and has a model card marked 'ensemble'; predict, evaluate, serve and export "
        "accept it like a run. Members must have the same classes in the same order and the same "
        "split.csv (split hash). Probabilities are averaged over members, each after its own temperature.",
        epilog="Example:  cxr ensemble create --out runs/ens runs/lite0 runs/lite0_seed2\n"
        "          cxr evaluate runs/ens && cxr predict runs/ens scans/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="ensemble_command", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="write an ensemble directory from run directories")
    c.add_argument("members", nargs="+", type=Path, metavar="RUN", help="finished run directories")
    c.add_argument("--out", type=Path, required=True, help="ensemble directory to write")
    c.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> None:
    from ..inference.ensemble import create_ensemble

    out = create_ensemble(args.out, args.members)
    console.print(f"wrote [bold]{out}[/] (ensemble of {len(args.members)} runs)")
