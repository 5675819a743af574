"""``cxr protocols``: one config trained and scored under several evaluation protocols, one table."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._meta import RESEARCH_NOTICE
from ..training.config import TrainConfig, read_config_file
from ..workflows.protocols import DEFAULT_PROTOCOLS, PROTOCOL_KEYS, PROTOCOLS, parse_protocols
from ._config_args import add_config_arguments, config_values
from ._console import console, say
from .train import add_config_file_argument


def register(subparsers) -> None:
    listing = "\n".join(f"  {p.name:22s}{p.what}" for p in PROTOCOLS.values())
    p = subparsers.add_parser(
        "protocols",
        help="the same model under each evaluation protocol, in one table",
        description="Train the same config under several split protocols (patient-disjoint, the "
        "original's random image split, leave-source-out proxies), score each model on its "
        "own test split (and on --external data), and write OUT/protocols.md, "
        "protocols.json and report.html: accuracy, macro-F1, per-class sensitivity with 95% CIs, the count "
        "of leaked test images, the gap to the patient-disjoint number. A rerun reuses "
        "finished protocols and resumes an interrupted one.",
        epilog=f"Protocols:\n{listing}\n\nExample:\n"
        "  cxr protocols --data ../shared/data/cxr --out runs/protocols --config fast\n"
        "  cxr protocols --data DATA --out runs/p --protocols patient,image --model resdense_small "
        "--input-size 160 --epochs 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--protocols",
        default=",".join(DEFAULT_PROTOCOLS),
        help=f"comma-separated, in this order (default {','.join(DEFAULT_PROTOCOLS)})",
    )
    p.add_argument(
        "--external",
        default=None,
        metavar="DATA",
        help="another dataset every protocol's model is also scored on, whole",
    )
    p.add_argument(
        "--external-by",
        nargs="+",
        default=None,
        metavar="COLUMN",
        help="subgroups of the external set (e.g. view population age), in protocols.json",
    )
    p.add_argument(
        "--abnormal",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="external labels that are not model classes but abnormal (e.g. pneumonia): scored as "
        "'abnormal called normal' (see `cxr evaluate --help`)",
    )
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the CIs")
    add_config_file_argument(p)
    add_config_arguments(p, TrainConfig, skip=PROTOCOL_KEYS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..errors import UsageError
    from ..training.stop import TrainingStopped
    from ..workflows.protocols import run_protocols
    from ._fit_lines import fit_progress
    from .train import exit_stopped

    flags = config_values(args, TrainConfig)
    base = {**(read_config_file(args.config) if args.config else {}), **flags}
    data, out = base.pop("data", None), base.pop("out", None)
    if not data or not out:
        raise UsageError("cxr protocols needs --data DATA and --out DIR (as flags or in --config)")
    try:
        with fit_progress() as callbacks:
            table = run_protocols(
                data,
                Path(out),
                parse_protocols(args.protocols),
                base,
                external=args.external,
                resamples=args.resamples,
                workers=base.get("workers", 2),
                on_stage=say,
                external_by=args.external_by,
                abnormal=args.abnormal,
                train_callbacks=callbacks,
            )
    except TrainingStopped as stop:
        exit_stopped(stop, "the same cxr protocols command (finished protocols are reused, this one resumes)")
    console.print((Path(out) / "protocols.md").read_text())
    console.print(
        f"wrote [bold]{Path(out) / 'protocols.md'}[/], protocols.json and report.html "
        f"({len(table['rows'])} protocols). [dim]{RESEARCH_NOTICE}[/]"
    )
