"""How far the training seed alone moves ``cxr adapt``, and whether an ensemble of adapted seeds helps.

The site folds stay fixed (``--fold-seed``); only the fine-tune's seed changes (its shuffling,
augmentation and replayed films). Each seed adapts on every training-fold patient with cxr
adapt's settings and predicts the held-out fold (:func:`cxrkit.workflows.adapt.fit_and_predict`,
as the site report does). The ensemble of several seeds averages their class probabilities, the
rule of ``cxr ensemble create``; these fold models are not calibrated, so no member's temperature
is applied first, as an ensemble of calibrated adapted runs would. Writes one results file
(rendered by ``bench/render_results.py``).

Usage:
  python bench/site_adapt_seeds.py BASE_RUN --site ../shared/data/site --out runs/site/seeds \\
      [--folds 3] [--fold-seed 0] [--seeds 0 1 2] [--result bench/results/site_adapt_seeds]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import numpy as np
from _common import pct_ci, save_result

from cxrkit._numeric import softmax
from cxrkit.cli.adapt import add_settings_arguments, settings_from_args
from cxrkit.inference.loader import load_predictor
from cxrkit.training.adapt import load_site
from cxrkit.workflows.adapt import fit_and_predict, site_folds, site_metrics


def mean_probability_logits(logits: list[np.ndarray], n_classes: int) -> np.ndarray:
    """Log of the members' mean class probability (what an ensemble of runs predicts)."""
    return np.log(np.mean([softmax(x[:, :n_classes]) for x in logits], axis=0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path)
    p.add_argument("--site", type=Path, default=Path("../shared/data/site"))
    p.add_argument(
        "--out", type=Path, required=True, help="working folder: each fit's run, each seed's held-out logits (reused)"
    )
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--fold-seed", type=int, default=0, help="the seed of the patient folds (kept fixed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    add_settings_arguments(p)
    p.add_argument("--result", type=Path, default=Path("bench/results/site_adapt_seeds"))
    a = p.parse_args()
    settings = settings_from_args(a)
    a.out.mkdir(parents=True, exist_ok=True)
    sd = load_site(a.base, a.site, settings.label_map)
    classes, patients, labels = list(sd.base.classes), sd.patients, sd.site_labels
    fold = site_folds(patients, labels, a.folds, a.fold_seed)
    held = {}
    for seed in a.seeds:
        saved = a.out / f"held_out_folds{a.folds}_{a.fold_seed}_seed{seed}.npy"  # a rerun reuses it
        if saved.exists():
            held[seed] = np.load(saved)
            continue
        held[seed] = np.zeros((len(labels), len(sd.outputs)), np.float32)
        for k in range(a.folds):
            print(f"seed {seed}, fold {k + 1}/{a.folds}", file=sys.stderr, flush=True)
            rows, test = np.nonzero(fold != k)[0], np.nonzero(fold == k)[0]
            held[seed][test] = fit_and_predict(sd, rows, test, dataclasses.replace(settings, seed=seed), a.out / "work")
        np.save(saved, held[seed])
    models = {
        "base (no adaptation)": load_predictor(a.base, backend="torch", precision="32").all_logits_from_uint8(
            sd.site_images
        )
    }
    models |= {f"seed {s}": held[s] for s in a.seeds}
    for n in range(2, len(a.seeds) + 1):
        for combo in itertools.combinations(a.seeds, n):
            name = f"ensemble of seeds {', '.join(map(str, combo))}"
            models[name] = mean_probability_logits([held[s] for s in combo], len(classes))
    rows_out, missed = [], {}
    for name, logits in models.items():
        m = site_metrics(labels, logits, classes, patients, 2000)
        pred = logits[:, : len(classes)].argmax(1)
        wrong = {int(i) for i in np.nonzero((labels < len(classes)) & (pred != labels))[0]}
        missed[name] = wrong
        counts = {c: sum(1 for i in wrong if labels[i] == classes.index(c)) for c in m["films"]}
        rows_out.append(
            [
                name,
                *(pct_ci(m["metrics"][f"called_right/{c}"]) for c in m["films"]),
                pct_ci(m["metrics"]["balanced_accuracy"]),
                ", ".join(f"{c} {n}" for c, n in counts.items()),
            ]
        )
    films = list(m["films"])
    always = set.intersection(*(missed[f"seed {s}"] for s in a.seeds))
    listed = "\n".join(
        f"- `{sd.site.relpath(sd.site.records[i])}` ({sd.site.records[i].label})" for i in sorted(always)
    )
    note = (
        f"{a.folds} patient-disjoint folds within the site (fold seed {a.fold_seed}, the same for every row); "
        f"each training seed adapts on the other folds and predicts the held-out one. CIs: 95% patient "
        f"bootstrap. Settings (the seed aside): {settings.to_dict()}.\n\n"
        f"Films every seed gets wrong ({len(always)}):\n\n{listed}\n"
    )
    save_result(
        a.result,
        {"fold_seed": a.fold_seed, "seeds": a.seeds, "settings": settings.to_dict()},
        title="Adapting to a new site: the training seed alone, and ensembles of adapted seeds",
        tables=[
            {
                "title": "Held-out site patients, called right % [95% CI]",
                "columns": ["model", *films, "balanced", "films missed"],
                "rows": rows_out,
            }
        ],
        markdown=note,
    )


if __name__ == "__main__":
    main()
