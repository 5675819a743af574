"""Adapting the default model to a new site, measured in patient folds within the site (issue 34).

Runs ``cxr adapt BASE --data SITE --out OUT --folds K`` through the API (the same
:func:`cxrkit.workflows.adapt.site_report`) and writes one results file: the learning curve
(0 = the base model, then labeled site patients per label) with 95% patient-bootstrap CIs on
held-out site patients, and, when the final model is made, the base and the adapted run on the
base run's own test split (what the adaptation cost elsewhere). ``bench/render_results.py``
renders it into ``docs/results/NAME.md``; ``--figure`` also copies the learning-curve plot into
the docs. The site's films are never copied: the report reads them in place.

Usage:
  python bench/site_adapt.py BASE_RUN --site ../shared/data/site --out runs/site/NAME \\
      [--folds 5] [--shots 0 5 10 25 all] [--no-final] [cxr adapt's settings: --replay 800 --anchor 0 ...]
      [--result bench/results/site_adapt] [--figure PATH]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _common import pct_ci, save_result

from cxrkit.cli.adapt import _shots, add_settings_arguments, settings_from_args
from cxrkit.evaluation.site_plots import curve_series, series_name
from cxrkit.workflows.adapt import site_report


def tables(report: dict) -> list[dict]:
    series = curve_series(report)
    names = [series_name(k) for k in series]
    rows = []
    for j, step in enumerate(report["learning_curve"]):
        films = ", ".join(f"{c} {n}" for c, n in step["films"].items())
        rows.append([step["label"], films, *(pct_ci(series[k][j]) for k in series)])
    out = [
        {
            "title": f"Held-out site patients ({report['folds']} patient-disjoint folds), % with 95% CI",
            "columns": ["labeled site patients per label", "films", *names],
            "rows": rows,
        }
    ]
    final = report.get("adapted_on_all")
    if final:
        b, a = final["base"], final["adapted"]
        out.append(
            {
                "title": "What it cost elsewhere: the base run's own patient-disjoint splits, accuracy %",
                "columns": ["model", "val [95% CI]", "test films", "test [95% CI]", "test change (points)"],
                "rows": [
                    ["base (default model)", pct_ci(b.get("val_accuracy")), b["n_images"], pct_ci(b["accuracy"]), ""],
                    [
                        "adapted on every site film",
                        pct_ci(a.get("val_accuracy")),
                        a["n_images"],
                        pct_ci(a["accuracy"]),
                        f"{(a['accuracy']['value'] - b['accuracy']['value']) * 100:+.1f}",
                    ],
                ],
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path)
    p.add_argument("--site", type=Path, default=Path("../shared/data/site"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--shots", nargs="+", type=_shots, default=[0, 5, 10, 25, None])
    p.add_argument("--no-final", action="store_true", help="skip the model adapted on every film")
    add_settings_arguments(p)
    p.add_argument("--result", type=Path, default=Path("bench/results/site_adapt"))
    p.add_argument("--title", default="Adapting the default model to a new site (site/)")
    p.add_argument("--figure", type=Path, default=None, help="copy learning_curve.png here")
    a = p.parse_args()
    settings = settings_from_args(a)
    report = site_report(
        a.base,
        a.site,
        a.out,
        a.folds,
        tuple(a.shots),
        settings,
        on_stage=lambda m: print(m, file=sys.stderr, flush=True),
        final_model=not a.no_final,
    )
    if a.figure:
        shutil.copyfile(a.out / "learning_curve.png", a.figure)
    note = (
        f"{report['protocol']}. Base: the default recipe (`cxr train --data ../shared/data/cxr ../shared/data/nih`). "
        f"Site labels trained as another output: "
        + (", ".join(f"{k} -> {v}" for k, v in report["label_map"].items() if k != v) or "none")
        + f". Settings: {settings.to_dict()}. Wall time of the whole report: {report['seconds'] / 60:.1f} min."
    )
    save_result(a.result, report, title=a.title, tables=tables(report), markdown=note)


if __name__ == "__main__":
    main()
