"""A new site: adapt a run to the site's labeled films, and measure honestly what that gains.

``adapt`` is what ``cxr adapt BASE --data SITE --out NEW`` runs: fine-tune on every site film
(:mod:`cxrkit.training.adapt`), then refit the temperature and the other-abnormal threshold on
the base's val split, so the new run is ready to predict at once.

``site_report`` (``cxr adapt ... --folds K``) is what a hospital needs before trusting it: the
base model on the site's films with patient-level CIs; the adapted model on **held-out site
patients** (K patient-disjoint folds within the site, stratified by label), for a learning
curve of 0, 5, 10, 25 and all labeled patients per label; and the model adapted on every
site film against the base on the base run's own test split (what the adaptation costs
elsewhere). Every fold's films are predicted by a model that never saw their patients.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._bootstrap import bootstrap_ci
from .._io import atomic_write_text
from .._meta import RESEARCH_NOTICE
from .._numeric import softmax
from .._precision import host_cpu
from ..errors import UsageError
from ..evaluation.evaluate import calibrate_run
from ..evaluation.summaries import DEFAULT_RESAMPLES, summarize
from ..inference.defaults import NETWORK_BACKEND
from ..inference.loader import load_predictor
from ..inference.splits import predict_split
from ..run import ModelCard, RunDir, git_commit, run_lock
from ..training.adapt import AdaptSettings, SiteData, adapt_run, fit_adapted, load_site, write_adapted

SITE_REPORT_FORMAT = "cxrkit-site-report/1"
DEFAULT_SHOTS = (0, 5, 10, 25, None)  # labeled patients per label; None: every training-fold patient


@dataclass
class AdaptResult:
    run_dir: Path
    card: ModelCard
    calibration: dict
    mapping: dict[str, str]
    left_out: dict[str, int]
    skipped: list[dict]


def adapt(
    base_run: str | Path,
    site: str | Path,
    out: str | Path,
    settings: AdaptSettings = AdaptSettings(),
    workers: int = 2,
    cache_dir: str | Path | None = None,
    callbacks: tuple = (),
    on_stage: Callable[[str], None] = lambda m: None,
    progress: Callable[[int, int], None] | None = None,
) -> AdaptResult:
    """Adapt ``base_run`` (a run directory, or one member of an ensemble) to every labeled film of
    ``site`` and write the new run ``out``, calibrated on the base's val split."""
    with run_lock(out, "cxr adapt", on_note=on_stage):
        if RunDir(out).has_started():
            raise UsageError(f"{out} already holds a run; choose another --out (nothing was overwritten)")
        try:
            card, sd = adapt_run(
                base_run, site, out, settings, workers, cache_dir, callbacks, on_stage=on_stage, progress=progress
            )
            on_stage("refitting the temperature and the other-abnormal threshold on the base's val split")
            calibration = calibrate_run(load_predictor(out, backend=NETWORK_BACKEND), workers, cache_dir)
        except BaseException:
            if not RunDir(out).card.is_file():  # a failed adaptation leaves no half-written run
                shutil.rmtree(out, ignore_errors=True)
            raise
    return AdaptResult(Path(out), card, calibration, sd.mapping, sd.left_out, sd.skipped)


def site_folds(patients: list[str], labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold (0..k-1) of every film: whole patients dealt per label in seeded order, so every fold
    has about 1/k of each label's patients and no patient is in two folds."""
    first: dict[str, int] = {}
    for p, y in zip(patients, labels):
        first.setdefault(p, int(y))
    if len(first) < k:
        raise UsageError(
            f"the site has {len(first)} patient(s); {k} patient-disjoint folds need at least {k} "
            f"(use --folds {max(2, len(first))} or label more patients)"
            if len(first) >= 2
            else f"the site has {len(first)} patient; folds need at least 2 patients (adapt without --folds)"
        )
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    offset = 0
    for y in sorted(set(first.values())):
        group = [p for p, lab in first.items() if lab == y]
        for j, p in enumerate(rng.permutation(group)):
            fold_of[str(p)] = (offset + j) % k
        offset += len(group)  # the next label starts where this one ended: folds stay even
    return np.array([fold_of[p] for p in patients], dtype=np.int64)


def shot_rows(patients: list[str], labels: np.ndarray, pool: np.ndarray, shots: int | None, seed: int) -> np.ndarray:
    """The films of ``shots`` patients per label among ``pool`` (film rows); None: all of them.
    The draw is nested: 10 patients per label include the 5 of the smaller step."""
    if shots is None:
        return pool
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for y in sorted(set(labels[pool].tolist())):
        ps = list(dict.fromkeys(patients[i] for i in pool if labels[i] == y))
        chosen.update(str(p) for p in rng.permutation(ps)[:shots])
    return np.array([i for i in pool if patients[i] in chosen], dtype=np.int64)


def fit_and_predict(
    sd: SiteData, rows: np.ndarray, test: np.ndarray, settings: AdaptSettings, work: Path
) -> np.ndarray:
    """Adapt on the site films ``rows`` and return every output's logits for the films ``test``
    (patients the fit never saw), through a run directory written to ``work`` and read back as
    ``cxr predict`` would (fp32 torch, so hosts agree)."""
    model = fit_adapted(sd, rows, settings)
    shutil.rmtree(work, ignore_errors=True)
    write_adapted(sd, model, work, settings, rows)
    return load_predictor(work, backend="torch", precision="32").all_logits_from_uint8(sd.site_images[test])


def site_metrics(y: np.ndarray, logits: np.ndarray, classes: list[str], groups: list[str], resamples: int) -> dict:
    """Per site label that is a class, the share called that class, and their mean (balanced
    accuracy), with patient-bootstrap 95% CIs; over the films whose label is a class."""
    keep = y < len(classes)
    y, pred, groups = (
        y[keep],
        softmax(logits[keep][:, : len(classes)]).argmax(1),
        [g for g, k in zip(groups, keep) if k],
    )
    present = [c for c in range(len(classes)) if (y == c).any()]

    def metric(idx):
        out = {}
        for c in present:
            sel = y[idx] == c
            out[f"called_right/{classes[c]}"] = float((pred[idx][sel] == c).mean()) if sel.any() else float("nan")
        out["balanced_accuracy"] = float(np.nanmean([out[f"called_right/{classes[c]}"] for c in present]))
        out["accuracy"] = float((pred[idx] == y[idx]).mean())
        return out

    return {
        "films": {classes[c]: int((y == c).sum()) for c in present},
        "patients": len(set(groups)),
        "metrics": bootstrap_ci(metric, len(y), groups=groups, n_resamples=resamples),
    }


def site_report(
    base_run: str | Path,
    site: str | Path,
    out: str | Path,
    folds: int = 5,
    shots: tuple = DEFAULT_SHOTS,
    settings: AdaptSettings = AdaptSettings(),
    workers: int = 2,
    cache_dir: str | Path | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    on_stage: Callable[[str], None] = lambda m: None,
    progress: Callable[[int, int], None] | None = None,
    final_model: bool = True,
) -> dict:
    """Measure adaptation on ``site`` in ``folds`` patient-disjoint folds; write ``out/site_report.json``,
    ``out/site_report.md``, ``out/learning_curve.png``, ``out/site_predictions.csv`` (every film's
    held-out predictions: :func:`held_out_csv`) and (``final_model``) the run adapted on
    every site film in ``out/model`` with its cost on the base's test split. Returns the report."""
    out = Path(out)
    if (out / "site_report.json").exists():
        raise UsageError(f"{out} already holds a site report; choose another --out (nothing was overwritten)")
    start = time.perf_counter()
    sd = load_site(base_run, site, settings.label_map, workers, cache_dir, progress, on_stage)
    patients, labels = sd.patients, sd.site_labels
    fold = site_folds(patients, labels, folds, settings.seed)
    base = load_predictor(base_run, backend="torch", precision="32")
    base_logits = base.all_logits_from_uint8(sd.site_images)
    classes = list(sd.base.classes)
    trained = [s for s in shots if s != 0]
    held_out = {s: np.zeros_like(base_logits) for s in trained}
    per_label_counts: dict = {s: [] for s in trained}  # training patients per label, every fold
    work = out / "work"
    n_fits, done = folds * len(trained), 0
    for k in range(folds):
        pool, test = np.nonzero(fold != k)[0], np.nonzero(fold == k)[0]
        for s in trained:
            rows = shot_rows(patients, labels, pool, s, settings.seed + k)
            per_label_counts[s] += [
                len({patients[i] for i in rows if labels[i] == y}) for y in set(labels[rows].tolist())
            ]
            elapsed = time.perf_counter() - start
            eta = f", ETA {elapsed / done * (n_fits - done) / 60:.0f} min" if done else ""
            on_stage(
                f"fold {k + 1}/{folds}, {'all' if s is None else s} patients per label "
                f"({len(rows)} films): fit {done + 1}/{n_fits}, {elapsed / 60:.1f} min elapsed{eta}"
            )
            held_out[s][test] = fit_and_predict(sd, rows, test, settings, work)
            done += 1
    shutil.rmtree(work, ignore_errors=True)
    curve = [{"shots": 0, "label": "0 (base)", **site_metrics(labels, base_logits, classes, patients, resamples)}]
    for s in trained:
        per_label = int(round(float(np.mean(per_label_counts[s])))) if per_label_counts[s] else 0
        curve.append(
            {
                "shots": s if s is not None else "all",
                "label": f"{s}" if s is not None else f"all (~{per_label} per label)",
                **site_metrics(labels, held_out[s], classes, patients, resamples),
            }
        )
    report = {
        "format": SITE_REPORT_FORMAT,
        "notice": RESEARCH_NOTICE,
        "base_run": str(Path(base_run).resolve()),
        "site": {"path": str(Path(site).resolve()), "films": int(len(labels)), "patients": len(set(patients))},
        "label_map": sd.mapping,
        "left_out": sd.left_out,
        "skipped": sd.skipped,
        "folds": folds,
        "settings": settings.to_dict(),
        "learning_curve": curve,
        "protocol": f"{folds} patient-disjoint folds within the site, stratified by label; each fold's films "
        "predicted by a model adapted on the other folds only (shots: labeled patients per label drawn from "
        "them); CIs: 95% patient bootstrap",
        "commit": git_commit(),
        "host": host_cpu(),
    }
    if final_model:
        report["adapted_on_all"] = _final_model(
            base_run, site, out / "model", settings, workers, cache_dir, resamples, on_stage
        )
    report["seconds"] = round(time.perf_counter() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "site_report.json", json.dumps(report, indent=2, allow_nan=True))
    from ..evaluation.site_plots import learning_curve_png, site_markdown  # noqa: PLC0415 (matplotlib)

    learning_curve_png(report, out / "learning_curve.png")
    atomic_write_text(out / "site_report.md", site_markdown(report))
    steps = {"base": base_logits, **{("all" if s is None else str(s)): held_out[s] for s in trained}}
    atomic_write_text(out / "site_predictions.csv", held_out_csv(sd, fold, steps))
    return report


def held_out_csv(sd, fold: np.ndarray, steps: dict[str, np.ndarray]) -> str:
    """Every site film once: its fold, label, and per model (the base; the adapted model at each
    learning-curve step, predicting films of patients it never saw) the class it called and the
    probability it gave the film's own label. Why: the films an adaptation still gets wrong are
    the ones a radiologist should look at (a wrong label, a film from another protocol)."""
    classes, outputs, patients = list(sd.base.classes), sd.outputs, sd.patients
    head = ["file", "patient_id", "site_label", "trains", "fold"]
    for name in steps:
        head += [f"called_{name}", f"p_label_{name}"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    probs = {name: softmax(logits[:, : len(classes)]) for name, logits in steps.items()}
    for i, r in enumerate(sd.site.records):
        y = int(sd.site_labels[i])
        row = [sd.site.relpath(r), patients[i], r.label, outputs[y], int(fold[i])]
        for p in probs.values():
            row += [classes[int(p[i].argmax())], f"{p[i][y]:.4f}" if y < len(classes) else ""]
        writer.writerow(row)
    return buf.getvalue()


def _final_model(base_run, site, model_dir: Path, settings, workers, cache_dir, resamples, on_stage) -> dict:
    """Adapt on every site film into ``model_dir``; the base and the adapted run on the base's val and
    test splits (fp32 torch, so hosts agree)."""
    on_stage(f"adapting on every site film -> {model_dir}")
    result = adapt(base_run, site, model_dir, settings, workers, cache_dir, on_stage=on_stage)
    on_stage("scoring the base and the adapted run on the base run's own val and test splits")
    rows = {}
    for name, run in (("base", base_run), ("adapted", model_dir)):
        predictor = load_predictor(run, backend="torch", precision="32")
        for split in ("test", "val"):  # val: what a recipe is chosen on; test: what is reported
            preds = predict_split(predictor, None, split, workers, cache_dir)
            summary = summarize(preds.y_true, preds.probs(), preds.classes, preds.patient_groups, resamples)
            key = "" if split == "test" else "val_"
            rows.setdefault(name, {}).update(
                {f"{key}n_images": summary["n_images"], f"{key}accuracy": summary["metrics"]["accuracy"]}
            )
    rows["run_dir"] = str(result.run_dir)
    rows["calibration"] = result.calibration
    return rows
