"""The main job end to end: inspect -> split -> train -> evaluate + audit + Grad-CAM -> report.

``run_demo`` is what ``cxr demo`` and ``make demo`` run; a finished model in ``out/model`` is
reused and an interrupted one resumed, so running it twice costs one training.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..run import RunDir
from ..training import TrainConfig
from ..training.config import DEMO_DEFAULTS  # noqa: F401  (re-exported: the demo's recipe)
from ..training.fit import prepare_data
from .evaluation import Evaluated, evaluate_and_report
from .inspect import write_inspection
from .training import train_ready

DEFAULT_BY = ("population", "subsource")


@dataclass
class DemoResult:
    inspect: dict
    run_dir: Path
    evaluated: Evaluated
    minutes: float


def inspect_to_folder(config: TrainConfig, out: Path, by=None, progress=None) -> tuple[dict, object]:
    """Decode and split ``config``'s data; write ``out/inspect.json`` and ``out/split.csv``."""
    prep = prepare_data(config, config.split_file, progress)
    return write_inspection(prep, out, by), prep


def run_demo(
    config: TrainConfig,
    out: str | Path,
    by: list[str] | tuple = DEFAULT_BY,
    workers: int | None = None,
    on_stage: Callable[[str], None] = lambda m: None,
    progress: Callable[[int, int], None] | None = None,
    train_progress_bar: bool = True,
    train_callbacks: tuple = (),
) -> DemoResult:
    """Inspect and split ``config.data`` into ``out``, train ``out/model``, evaluate it into ``out/report``.

    ``config.out`` and ``config.split_file`` are set here (``out/model``, ``out/split.csv``);
    ``by`` columns that the data lacks are left out of the subgroup tables and the audit.
    ``train_callbacks``: Lightning callbacks of the training (e.g. progress lines). The same call
    again reuses a finished training and resumes an interrupted one.
    """
    start = time.perf_counter()
    out = Path(out)
    run = RunDir(out / "model")
    split_file = out / "split.csv"
    on_stage(f"1/3 inspect and split {config.data}")
    report, _ = inspect_to_folder(dataclasses.replace(config, split_file=None), out, None, progress)
    present = {t["column"] for t in report["confounds"]}
    by = [c for c in by if c in present]
    config = dataclasses.replace(config, out=str(run.root), split_file=str(split_file))
    on_stage(f"2/3 train {config.model} -> {run.root}")
    if run.is_finished():
        on_stage(f"reusing the finished run in {run.root} (choose another --out to train anew)")
    else:
        train_ready(
            config,
            resume=run.last_checkpoint.is_file(),
            on_stage=on_stage,
            data_progress=progress,
            progress_bar=train_progress_bar,
            callbacks=train_callbacks,
        )
    on_stage(f"3/3 evaluate, audit and explain on the test split of the {config.split_by} protocol")
    evaluated = evaluate_and_report(
        run.root,
        None,
        "test",
        by,
        workers=workers or config.workers,
        audit=True,
        explain=True,
        out=out / "report",
        on_stage=on_stage,
        progress=progress,
    )
    return DemoResult(report, run.root, evaluated, (time.perf_counter() - start) / 60)
