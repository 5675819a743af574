"""``cxr evaluate``, ``cxr audit`` and ``cxr compare``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.table import Table

from .._io import atomic_write_json, atomic_write_text
from .._meta import RESEARCH_NOTICE
from ..run import RunDir
from ..run.layout import AUDIT_DIR, AUDIT_FILE, EVALUATION_DIR
from ._console import CliError, console, heartbeat, plain_progress, say
from .predict import add_precision_argument, add_tta_argument


def _common(p: argparse.ArgumentParser, run_help: str = "run directory made by `cxr train`", optional=False) -> None:
    p.add_argument("run_dir", type=Path, nargs="?" if optional else None, help=run_help)
    p.add_argument(
        "--data",
        nargs="+",
        default=None,
        metavar="DATA",
        help="dataset to evaluate on (default: the run's training data with its split); "
        "other data is external validation, classes matched by name; several roots are read as one "
        "dataset, as `cxr train --data A B` reads them",
    )
    p.add_argument(
        "--split",
        default=None,
        choices=["train", "val", "test", "all", "excluded"],
        help="which images (default: test for the training data, all for other data); excluded: those a "
        "protocol left out of every split (e.g. lso-adult's pediatric normals), scored as `cxr protocols` does",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--lung-run",
        type=Path,
        default=None,
        help="run of `cxr lungs train` whose masks define the lung field of the audit and CAM shares "
        "(default: the classifier's own with roi: lungs, else the fixed central box)",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="metrics with CIs, calibration, subgroups, report.html",
        description="Evaluate a trained run: accuracy, macro-F1, per-class sensitivity, specificity, "
        "PPV, NPV, F1 and ROC-AUC, each with a bootstrap 95% CI (resampling patients where "
        "ids exist); confusion matrix; calibration (ECE, Brier, reliability) before/after "
        "temperature scaling fitted on val and saved into the run; metrics per subgroup "
        "(--by). Writes metrics.json, PNG plots and a self-contained report.html.",
        epilog="Examples:\n  cxr evaluate runs/lite0 --by population subsource --audit\n"
        "  cxr evaluate runs/lite0 --data /data/other_hospital   # external validation\n"
        "  cxr evaluate runs/lite0 --tta                         # test-time augmentation\n"
        "  cxr evaluate runs/lite0 --data ../shared/data/external --by view population age \\\n"
        "      --abnormal pneumonia --audit                      # external films by view and age\n"
        "  cxr evaluate --ensemble runs/a runs/b                 # writes and scores runs/ensemble-a+b",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(
        p,
        "run or ensemble directory; with --ensemble, where to write the ensemble (default beside the first member)",
        optional=True,
    )
    add_tta_argument(p)
    add_precision_argument(p)
    p.add_argument(
        "--ensemble",
        nargs="+",
        type=Path,
        default=None,
        metavar="RUN",
        help="score the ensemble of these runs (same classes and split.csv, else refused): written as an "
        "ensemble directory (see `cxr ensemble create`), whose val-fitted temperature and evaluation stay there",
    )
    p.add_argument(
        "--by",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help="metadata columns for subgroup results, e.g. population subsource",
    )
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument(
        "--abnormal",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="labels of the data that are not model classes but are abnormal (e.g. pneumonia): instead of being "
        "left out, such a film predicted 'normal' counts as a miss; reports 'abnormal called normal' with its CI, "
        "per --by subgroup, and the AUC of not-normal against the data's normal films",
    )
    p.add_argument("--audit", action="store_true", help="also run the shortcut audit (see `cxr audit -h`)")
    p.add_argument("--out", type=Path, default=None, help=f"report folder (default RUN_DIR/{EVALUATION_DIR})")
    p.set_defaults(func=run_evaluate)

    p = subparsers.add_parser(
        "audit",
        help="does the model look at the lungs or at shortcuts?",
        description="Shortcut audit: confound probes (can the model's features predict population or "
        "source as well as the class?), adult-only metrics, and occlusion tests (lungs "
        "hidden, only lungs kept, border band blanked), with a verdict written from the "
        "numbers by documented rules (cxrkit.evaluation.audit.verdict).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--by", nargs="+", default=["population", "subsource"], metavar="COLUMN", help="confounding attributes to probe"
    )
    p.add_argument("--out", type=Path, default=None, help=f"folder for {AUDIT_FILE} (default RUN_DIR/{AUDIT_DIR})")
    p.set_defaults(func=run_audit)

    p = subparsers.add_parser(
        "compare",
        help="one table across evaluated runs",
        description="Compare runs: model, weights, test metrics with CIs, ECE. Each run needs `cxr evaluate` first.",
    )
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("comparison.md"), help="Markdown table to write")
    p.set_defaults(func=run_compare)


def _data(args: argparse.Namespace):
    """``--data``: None, one root as a string, or several as a list (what the library reads)."""
    if not args.data:
        return None
    return args.data[0] if len(args.data) == 1 else args.data


def run_evaluate(args: argparse.Namespace) -> None:
    from ..evaluation.report import render_markdown
    from ..workflows import evaluate_and_report

    run_dir = args.run_dir
    if args.ensemble:
        from ..inference.ensemble import create_ensemble, default_ensemble_dir

        run_dir = create_ensemble(run_dir or default_ensemble_dir(args.ensemble), args.ensemble)
        console.print(f"[bold]»[/] ensemble of {len(args.ensemble)} runs: [bold]{run_dir}[/]")
    elif run_dir is None:
        raise CliError("say which run to evaluate: RUN_DIR, or --ensemble RUN_A RUN_B ...")
    with heartbeat():
        result = evaluate_and_report(
            run_dir,
            _data(args),
            args.split,
            args.by,
            args.resamples,
            args.workers,
            audit=args.audit,
            lung_run=args.lung_run,
            out=args.out,
            on_stage=say,
            progress=plain_progress("reading images"),
            tta=args.tta,
            precision=args.precision,
            abnormal=args.abnormal,
        )
    console.print(render_markdown(result.evaluation))
    console.print(f"wrote [bold]{result.files.get('report.html', args.out)}[/]")


def run_audit(args: argparse.Namespace) -> None:
    from ..evaluation.audit import audit_run
    from ..inference.defaults import NETWORK_BACKEND
    from ..inference.loader import load_predictor

    result = audit_run(
        load_predictor(args.run_dir, backend=NETWORK_BACKEND),
        _data(args),
        args.split,
        args.by,
        args.workers,
        lung_run=args.lung_run,
    )
    out = args.out or RunDir(args.run_dir).audit
    atomic_write_json(out / AUDIT_FILE, {"notice": RESEARCH_NOTICE, **result})
    t = Table(title="occlusion")
    for col in ("condition", "accuracy", "balanced accuracy"):
        t.add_column(col)
    for o in result["occlusion"]:
        t.add_row(o["condition"], f"{o['accuracy']:.3f}", f"{o['balanced_accuracy']:.3f}")
    console.print(t)
    for p in result["probes"]:
        console.print(
            f"probe {p['attribute']} ({p['scope']}): balanced accuracy {p['balanced_accuracy']:.3f} "
            f"(class probe {p['class_balanced_accuracy']:.3f}, chance {p['chance']:.2f})"
        )
    console.print(f"[bold]verdict:[/] {result['verdict']}")
    console.print(f"wrote [bold]{out / AUDIT_FILE}[/]")


def run_compare(args: argparse.Namespace) -> None:
    from ..workflows.evaluation import COMPARE_HEADER, compare_runs, markdown_table

    rows = compare_runs(args.run_dirs)
    t = Table(title="runs compared")
    for h in COMPARE_HEADER:
        t.add_column(h)
    for r in rows:
        t.add_row(*r)
    console.print(t)
    atomic_write_text(args.out, markdown_table(COMPARE_HEADER, rows) + f"\n{RESEARCH_NOTICE}\n")
    console.print(f"wrote [bold]{args.out}[/]")
