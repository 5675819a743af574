"""Evaluate -> (audit) -> report: the sequence ``cxr evaluate``, ``cxr demo`` and scripts share.

The test split is predicted once and reused by the metrics, the audit and (in the demo) the
Grad-CAM summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.multi import data_roots
from ..errors import UsageError
from ..evaluation.audit import audit_run
from ..evaluation.evaluate import evaluate_run
from ..evaluation.report import format_ci, headline_protocol, write_report
from ..explain.cams import Explainer
from ..explain.summary import explain_split, write_summary
from ..inference.defaults import DEFAULT_PRECISION, NETWORK_BACKEND
from ..inference.ensemble import with_tta
from ..inference.loader import load_predictor
from ..inference.splits import predict_split
from ..inference.tta import describe
from ..run import RunDir, writes_run


@dataclass
class Evaluated:
    evaluation: dict  # the metrics.json dict (with "audit" / "explain" when run)
    files: dict  # name -> path written (metrics.json, report.html, figures)


@writes_run("cxr evaluate", lambda a: a["out"] or RunDir(a["run_dir"]).evaluation)
def evaluate_and_report(
    run_dir: str | Path,
    data: str | Path | list[str | Path] | None = None,
    split: str | None = None,
    by: list[str] | None = None,
    resamples: int = 1000,
    workers: int = 2,
    audit: bool = False,
    explain: bool = False,
    out: str | Path | None = None,
    on_stage: Callable[[str], None] = lambda m: None,
    lung_run: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    tta: str = "none",
    precision: str = DEFAULT_PRECISION,
    abnormal: list[str] | None = None,
) -> Evaluated:
    """Metrics with CIs (+ the shortcut audit, + Grad-CAM class summaries) into ``out``'s report.

    What ``cxr evaluate`` runs. An ensemble directory is evaluated like a run
    (:mod:`cxrkit.inference.ensemble`). The temperature fitted on val is saved into the run.

    Args:
        run_dir: the run (or ensemble) directory.
        data: the dataset to score (default: the run's training data, read with its split);
            other data is external validation, classes matched by name.
        split: "train", "val", "test", "all" or "excluded" (default: test for the training
            data, all for other data).
        by: metadata columns for subgroup results (e.g. ``["population", "view"]``).
        resamples: bootstrap resamples of every CI.
        workers: processes decoding images.
        audit: also run the shortcut audit (:mod:`cxrkit.evaluation.audit`).
        explain: also summarise Grad-CAM maps per class, into ``out/explain`` and the report.
        out: the report folder (default ``RUN/evaluation``).
        on_stage: called with each step's name.
        lung_run: a ``cxr lungs train`` run whose masks define the lung field of the audit.
        progress: called as ``progress(done, total)`` while the images are read, then during the
            Grad-CAM passes.
        tta: "standard" for test-time augmentation (:mod:`cxrkit.inference.tta`), recorded in
            metrics.json.
        precision: "auto", "32" or "bf16".
        abnormal: labels that are not model classes, scored as "abnormal called normal"
            (:mod:`cxrkit.evaluation.abnormal`).

    Returns:
        ``Evaluated``: the ``metrics.json`` dict and the files written (``report.html``, figures).
    """
    run = RunDir(run_dir)
    out = Path(out) if out else run.evaluation
    predictor = load_predictor(run.root, backend=NETWORK_BACKEND, tta=tta, precision=precision)
    if predictor.precision_note:
        on_stage(f"note: {predictor.precision_note}")
    where = " + ".join(data_roots(data)) if data else "the training data"
    on_stage(f"predicting the {split or 'default'} split of {where}")
    preds = predict_split(predictor, data, split, workers, abnormal=abnormal, progress=progress)
    preds = with_tta(predictor, preds, workers)
    on_stage(f"metrics with {resamples} bootstrap resamples")
    ev = evaluate_run(run.root, data, split, by, resamples, workers, predictor=predictor, preds=preds)
    ev.update(describe(tta), ensemble_members=getattr(predictor, "member_ids", None), precision=predictor.precision)
    if audit:
        on_stage("shortcut audit")
        ev["audit"] = audit_run(predictor, columns=by or None, workers=workers, preds=preds, lung_run=lung_run)
    figures = {}
    if explain:
        on_stage("Grad-CAM over the split")
        result = explain_split(
            Explainer(predictor),
            data,
            split,
            workers,
            progress=progress,
            lung_run=lung_run,
            preds=preds if tta == "none" else None,
        )
        summary = write_summary(out / "explain", result)
        ev["explain"] = {
            "images": {k: f"explain/{v}" for k, v in summary["images"].items()},
            "lung_vs_border": summary["lung_vs_border"],
            "lung_region": summary["lung_region"],
        }
        figures = {name: (out / "explain" / file).read_bytes() for name, file in summary["images"].items()}
    return Evaluated(ev, write_report(out, ev, extra_images=figures))


COMPARE_HEADER = [
    "run",
    "model",
    "split (protocol)",
    "images",
    "accuracy [95% CI]",
    "macro-F1 [95% CI]",
    "sensitivity, first class [95% CI]",
    "ECE (calibrated)",
]


def compare_runs(run_dirs: list[str | Path]) -> list[list[str]]:
    """One row per evaluated run, from each run's ``evaluation/metrics.json`` (what ``cxr compare`` prints).

    Args:
        run_dirs: runs that ``cxr evaluate`` has evaluated (else a UsageError names the first that is not).

    Returns:
        Rows of text cells under ``COMPARE_HEADER``: run, model, protocol, images, accuracy and
        macro-F1 with their CIs, first class's sensitivity, ECE.
    """
    rows = []
    for run_dir in run_dirs:
        path = RunDir(run_dir).metrics
        if not path.is_file():
            raise UsageError(
                f"{run_dir}: no {path.relative_to(RunDir(run_dir).root)}; run `cxr evaluate {run_dir}` first"
            )
        ev = json.loads(path.read_text())
        m = ev["overall"]["metrics"]
        first = ev["run"]["classes"][0]
        rows.append(
            [
                str(run_dir),
                ev["run"]["model"],
                headline_protocol(ev),
                str(ev["overall"]["n_images"]),
                format_ci("accuracy", m.get("accuracy")),
                format_ci("macro_f1", m.get("macro_f1")),
                format_ci(f"sensitivity/{first}", m.get(f"sensitivity/{first}")),
                f"{ev['calibration']['after']['ece']:.3f}",
            ]
        )
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    return md + "".join("| " + " | ".join(r) + " |\n" for r in rows)
