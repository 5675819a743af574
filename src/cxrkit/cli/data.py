"""``cxr data inspect`` and ``cxr data split``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .._meta import RESEARCH_NOTICE
from ..data import write_split
from ..data.duplicates import DEFAULT_MAX_DISTANCE
from ..data.splits import SPLIT_BY, SPLITS
from ._config_args import parse_fractions
from ._console import console, progress_bar

MAX_SKIPPED_SHOWN = 20
MAX_CONFOUND_ROWS = 15


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that reads a dataset and splits it."""
    p.add_argument(
        "--classes",
        default=None,
        help="comma-separated classes to keep, in this order (default: "
        "covid,viral_pneumonia,normal; 'all' keeps every class found). "
        "Aliases such as 'COVID-19' or 'Viral Pneumonia' are understood.",
    )
    p.add_argument(
        "--split-file", type=Path, default=None, help="reuse a saved split.csv instead of making a new split"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--fractions", default="0.7,0.15,0.15", help="train,val,test shares (default 0.7,0.15,0.15)")
    p.add_argument(
        "--dup-threshold",
        type=int,
        default=DEFAULT_MAX_DISTANCE,
        help="max differing bits (of 256) for two images to count as near-duplicates "
        f"and be kept in one split (default {DEFAULT_MAX_DISTANCE}; -1 disables)",
    )
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes that decode images (default: all cores)"
    )


def add_protocol_arguments(p: argparse.ArgumentParser) -> None:
    """--split-by, --holdout-source, --select: the split protocol (cxrkit.data.splits)."""
    p.add_argument(
        "--split-by",
        choices=SPLIT_BY,
        default="patient",
        help="patient: whole patients and near-duplicates per split; image: random per image "
        "(leaky, the count of leaked test images is printed); source: --holdout-source to test",
    )
    p.add_argument(
        "--holdout-source",
        nargs="+",
        default=None,
        metavar="RULE",
        help="with --split-by source: subsource values (ieee8023) or column=value rules "
        "('label=normal population=pediatric') whose images all go to test",
    )
    p.add_argument(
        "--select",
        nargs="+",
        default=None,
        metavar="RULE",
        help="only images matching one of these rules enter ('label=covid n=219' draws 219)",
    )


def add_outside_paths_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-outside-paths",
        action="store_true",
        help="read manifest rows whose path leaves the manifest's folder (../ or absolute "
        "paths); without it they are skipped and listed",
    )


def prepare_from_args(args: argparse.Namespace):
    with progress_bar("decoding and hashing images") as update:
        from ..data.prepare import prepare  # the function, not the submodule

        prep = prepare(
            args.data,
            args.classes,
            split_file=args.split_file,
            seed=args.seed,
            fractions=parse_fractions(args.fractions),
            max_distance=args.dup_threshold,
            workers=args.workers,
            progress=update,
            allow_outside_paths=getattr(args, "allow_outside_paths", False),
            split_by=getattr(args, "split_by", "patient"),
            holdout=getattr(args, "holdout_source", None),
            select=getattr(args, "select", None),
        )
    for note in prep.dataset.notes:
        console.print(f"[yellow]note:[/] {note}")
    return prep


def register(subparsers) -> None:
    data = subparsers.add_parser(
        "data", help="look at a dataset and split it", description="Look at a dataset and split it."
    )
    sub = data.add_subparsers(dest="data_command", required=True, metavar="{inspect,split}")

    p = sub.add_parser(
        "inspect",
        help="counts, sizes, patients, duplicates, skipped files and confounds",
        description="Decode every image once, split by patient and near-duplicate group, and "
        "report what is in the data and what could mislead a model: images per class "
        "and split, sizes and modes, patients, duplicates, unreadable files, and "
        "class-by-column tables for metadata such as population or subsource. "
        "Writes inspect.json and split.csv to --out.",
        epilog="DATA is a folder of class folders (Kaggle v1 or v4 layouts work), a folder "
        "with manifest.csv, a manifest CSV, or an ieee8023 metadata.csv. "
        "Example: cxr data inspect ../shared/data/cxr --out runs/inspect",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "data", nargs="+", help="dataset folder or CSV; several are read as one (patient ids kept apart per dataset)"
    )
    add_dataset_arguments(p)
    add_outside_paths_argument(p)
    p.add_argument(
        "--by",
        nargs="+",
        default=None,
        metavar="COLUMN",
        help="metadata columns to cross with the class (default: population, "
        "subsource, source_split, view, sex where present)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/inspect"), help="output folder")
    p.set_defaults(func=run_inspect)

    p = sub.add_parser(
        "split",
        help="write a patient- and duplicate-aware split.csv",
        description="Make a seeded, stratified train/val/test split that keeps each patient and "
        "each near-duplicate group in one split, and write it as CSV.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "data", nargs="+", help="dataset folder or CSV; several are read as one (patient ids kept apart per dataset)"
    )
    add_dataset_arguments(p)
    add_outside_paths_argument(p)
    p.add_argument("--out", type=Path, default=Path("split.csv"), help="split CSV to write")
    add_protocol_arguments(p)
    p.set_defaults(func=run_split)


def inspect_to(data, out: Path, args: argparse.Namespace) -> dict:
    """Run the inspection for ``args`` and write inspect.json + split.csv under ``out``."""
    from ..workflows.inspect import write_inspection

    report = write_inspection(prepare_from_args(args), out, args.by)
    print_report(report)
    console.print(f"wrote [bold]{out / 'inspect.json'}[/] and [bold]{out / 'split.csv'}[/]")
    return report


def run_inspect(args: argparse.Namespace) -> None:
    inspect_to(args.data, args.out, args)


def run_split(args: argparse.Namespace) -> None:
    prep = prepare_from_args(args)
    write_split(args.out, prep.dataset, prep.split)
    _print_split_table(prep.split.counts(prep.dataset), prep.dataset.classes)
    _print_skipped([{"path": s.path, "reason": s.reason} for s in prep.dataset.skipped])
    console.print(
        f"wrote [bold]{args.out}[/] ({prep.split.stats.get('groups_merged_by_duplicates', 0)} "
        "groups merged by near-duplicates)"
    )
    proto = prep.split.stats.get("protocol", {})
    if proto.get("leaky"):
        console.print(
            f"[bold yellow]leaky:[/] split by {proto['split_by']}: {proto['leaked_test_images']} test "
            "image(s) have their patient or a near-duplicate in train"
        )
    if proto.get("excluded_images"):
        console.print(f"{proto['excluded_images']} image(s) left out by the protocol (split 'excluded' in the file)")
    if proto.get("test_missing_classes"):
        console.print(f"[yellow]warning:[/] no test images of class(es) {', '.join(proto['test_missing_classes'])}")


def _print_split_table(counts: dict, classes) -> None:
    t = Table(title="images per class and split")
    t.add_column("class")
    for s in SPLITS:
        t.add_column(s, justify="right")
    t.add_column("total", justify="right")
    for c in classes:
        row = [counts[s][c] for s in SPLITS]
        t.add_row(c, *map(str, row), str(sum(row)))
    totals = [sum(counts[s].values()) for s in SPLITS]
    t.add_row("[bold]all", *map(str, totals), str(sum(totals)))
    console.print(t)


def print_report(r: dict) -> None:
    d = r["dataset"]
    console.print(
        f"[bold]{d['root']}[/] read as [bold]{d['source']}[/]: {d['images']} images in {len(d['classes'])} classes"
    )
    for part in d.get("datasets", []):
        counts = ", ".join(f"{c} {n}" for c, n in part["class_counts"].items() if n)
        console.print(
            f"  dataset [bold]{part['name']}[/] ({part['location']}, {part['source']}): {part['images']} images "
            f"({counts}); fingerprint {part['fingerprint']}"
        )
    _print_split_table(r["split"]["counts"], d["classes"])
    if not d["images"]:
        console.print(
            f"[bold yellow]warning:[/] no readable images: all {len(r['skipped'])} listed file(s) "
            "were skipped (reasons below)"
        )
    if r["missing_classes"]:
        console.print(f"[yellow]warning:[/] no images for class(es) {', '.join(r['missing_classes'])}")
    if r["excluded"]:
        console.print("left out (not selected): " + ", ".join(f"{k} {v}" for k, v in r["excluded"].items()))
    s, p = r["split"], r["patients"]
    t = Table(title="images, patients and duplicates", show_header=False)
    t.add_column()
    t.add_column(justify="right")
    w, h = r["image_sizes"]["width"], r["image_sizes"]["height"]
    rows = [
        ("width min / median / max", f"{w.get('min')} / {w.get('median')} / {w.get('max')}"),
        ("height min / median / max", f"{h.get('min')} / {h.get('median')} / {h.get('max')}"),
        ("modes", ", ".join(f"{k} {v}" for k, v in r["image_modes"].items())),
        ("images with a lung mask", str(r["masks"])),
        ("patients (images with an id)", f"{p['with_id']} ({p['images_with_id']})"),
        ("images without patient id", str(p["images_without_id"])),
        ("split groups", str(s.get("groups", "-"))),
        (
            "near-duplicate pairs (groups merged)",
            f"{s.get('near_duplicate_pairs', '-')} ({s.get('groups_merged_by_duplicates', '-')})",
        ),
        ("non-image files ignored", str(r["ignored_non_image_files"])),
        ("unreadable files skipped", str(len(r["skipped"]) - r.get("label_conflicts", 0))),
        ("films under two labels in two datasets, left out", str(r.get("label_conflicts", 0))),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    for pair in s.get("near_duplicate_pairs_with_different_labels", []):
        console.print(f"[yellow]warning:[/] near-duplicates with different labels: {pair[0]} / {pair[1]}")
    _print_skipped(r["skipped"])
    for conf in r["confounds"]:
        _print_confound(conf, d["classes"])
    console.print(f"[dim]{RESEARCH_NOTICE}[/]")


def _print_skipped(skipped: list[dict]) -> None:
    """Every skipped file is counted; the first MAX_SKIPPED_SHOWN are named with the reason."""
    for item in skipped[:MAX_SKIPPED_SHOWN]:
        console.print(f"[yellow]skipped[/] {escape(item['path'])}: {escape(item['reason'])}")
    if len(skipped) > MAX_SKIPPED_SHOWN:
        console.print(f"... and {len(skipped) - MAX_SKIPPED_SHOWN} more skipped file(s) (see inspect.json)")


def _print_confound(conf: dict, classes) -> None:
    if "table" not in conf:
        console.print(f"column {conf['column']}: {conf.get('note')}")
        return
    t = Table(title=f"class by {conf['column']} (Cramer's V {conf['cramers_v']:.2f})")
    t.add_column(conf["column"])
    for c in classes:
        t.add_column(c, justify="right")
    rows = sorted(conf["table"].items(), key=lambda kv: -sum(kv[1].values()))
    for value, counts in rows[:MAX_CONFOUND_ROWS]:
        t.add_row(value, *(str(counts[c]) for c in classes))
    if len(rows) > MAX_CONFOUND_ROWS:
        t.caption = f"{len(rows) - MAX_CONFOUND_ROWS} smaller values not shown (see inspect.json)"
    console.print(t)
    for w in conf["warnings"]:
        console.print(f"[bold yellow]confound:[/] {w}")
