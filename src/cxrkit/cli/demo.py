"""``cxr demo``: the main job end to end: inspect -> split -> train -> evaluate + audit + explain -> report."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..training.config import TrainConfig
from . import data as data_cli
from ._console import CliError, console, progress_bar

SHARED_DATA = Path("../shared/data/cxr")
GET_DATA = (
    "No dataset found. Download the COVID-19 Radiography Database from Kaggle "
    "(https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database), unzip it, "
    "and run:  cxr demo --data PATH/TO/COVID-19_Radiography_Dataset   "
    "(or: make demo DATA=PATH). A folder of class folders or a manifest.csv works too."
)
# Fits the whole demo in ~30 minutes on a 2-core laptop CPU (see README, "Benchmarks").
DEMO_EPOCHS = 8
DEMO_TRAIN_MINUTES = 18.0


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
        description="The main job: inspect the dataset and make the patient- and duplicate-aware "
                    "split; train the default model; evaluate it on the test split with CIs, "
                    "calibration, subgroups, the shortcut audit and Grad-CAM class summaries; "
                    "write report.html. A finished "
                    "run in --out is reused, an interrupted one resumed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder (default: $CXR_DATA, else ../shared/data/cxr)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--model", default=TrainConfig.model, help="backbone to train")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="maximum training epochs")
    p.add_argument("--train-minutes", type=float, default=DEMO_TRAIN_MINUTES,
                   help="stop training after this many minutes (best val checkpoint is kept)")
    p.add_argument("--by", nargs="+", default=["population", "subsource"], metavar="COLUMN",
                   help="metadata columns for subgroup results and the audit (used where present)")
    data_cli.add_dataset_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..evaluation.audit import audit_run
    from ..evaluation.evaluate import evaluate_run, predict_split
    from ..evaluation.report import render_markdown, write_report
    from ..explain import Explainer
    from ..explain.summary import explain_split, write_summary
    from ..inference.predictor import Predictor
    from ..training import train

    start = time.perf_counter()
    args.data = find_data(args.data)
    console.rule(f"[bold]1/3 inspect and split {args.data}")
    report = data_cli.inspect_to(args.data, args.out, argparse.Namespace(**{**vars(args), "by": None}))
    by = [c for c in args.by if c in {t["column"] for t in report["confounds"]}]

    run_dir = args.out / "model"
    console.rule(f"[bold]2/3 train {args.model} -> {run_dir}")
    if (run_dir / "model_card.json").is_file():
        console.print(f"reusing the finished run in {run_dir} (choose another --out to train anew)")
    else:
        resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
        config = TrainConfig(data=str(args.data), out=str(run_dir), classes=args.classes, model=args.model,
                             epochs=args.epochs, max_minutes=args.train_minutes, seed=args.seed,
                             split_file=str(args.out / "split.csv"), workers=args.workers)
        with progress_bar("caching images") as update:
            train(config, resume=resume, on_stage=lambda m: console.print(f"[bold]»[/] {m}"),
                  data_progress=update)

    console.rule("[bold]3/3 evaluate, audit and explain on the test split")
    predictor = Predictor.from_run(run_dir)
    preds = predict_split(predictor, None, "test", args.workers)
    ev = evaluate_run(run_dir, by=by, workers=args.workers, predictor=predictor, preds=preds)
    ev["audit"] = audit_run(predictor, columns=by, workers=args.workers, preds=preds)
    report_dir = args.out / "report"
    with progress_bar("Grad-CAM over the test split") as update:
        result = explain_split(Explainer(predictor), None, "test", args.workers, progress=update)
    summary = write_summary(report_dir / "explain", result)
    ev["explain"] = {"images": {k: f"explain/{v}" for k, v in summary["images"].items()},
                     "lung_vs_border": summary["lung_vs_border"]}
    figures = {name: (report_dir / "explain" / file).read_bytes() for name, file in summary["images"].items()}
    paths = write_report(report_dir, ev, extra_images=figures)
    console.print(render_markdown(ev))
    console.print(f"demo finished in {(time.perf_counter() - start) / 60:.1f} min; report: "
                  f"[bold]{paths.get('report.html')}[/]")
