"""One row per trained recipe, scored where issue 26 chooses: val and ``../shared/data/external``.

For each run directory given, this evaluates (once; reused when present, fp32 so that hosts
agree) the run's own patient-disjoint test split into ``RUN/evaluation`` and the external set
into ``RUN/external``::

    cxr evaluate RUN --precision 32
    cxr evaluate RUN --data ../shared/data/external --by view population+label+view population+label \
        --abnormal pneumonia --audit --precision 32 --out RUN/external

and writes one JSON (rows + the host, commit, date, command, threads and load it ran under);
``bench/render_results.py`` renders it into ``docs/results/external_recipes.md``.
Columns, in the order a recipe is chosen by: val accuracy (what the
checkpoint was chosen on), then on ``external/``: Hannover COVID called COVID, NIH adult
normals AP / PA called normal, NIH children's normals called normal, NIH pneumonias AP / PA
called normal (the abnormal rule: with auxiliary outputs, a "normal" flagged other-abnormal
at the threshold fitted on val is not called normal), the share of external/'s normal films
that flag costs, the AUC of not-normal (pneumonia vs normal films), the
audit's within-normal view probe on the features beside its 12 x 12 pixel floor; reported and
never chosen on: the patient-disjoint test accuracy; and the training minutes.

Targets of issue 26 (on ``external/``): adult normals AP and PA >= 92%, pneumonias AP and PA
called normal <= 15%, children's normals >= 92%, Hannover COVID >= 98%. Once ``nih/`` is
trained on, ``external/``'s NIH films share a hospital with training (other patients): the
table says so in its ``note`` column.

Usage: python bench/external_table.py RUN [RUN ...] [--external ../shared/data/external]
       [--out bench/results/external_recipes] [--title TITLE] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import markdown_table, pct_ci, save_result

from cxrkit import RESEARCH_NOTICE

BY = ["view", "population+label+view", "population+label"]
HEADER = [
    "run",
    "recipe",
    "val acc",
    "Hannover COVID",
    "adult normal AP",
    "adult normal PA",
    "child normal",
    "pneumonia AP called normal",
    "pneumonia PA called normal",
    "normals flagged other-abnormal",
    "AUC not-normal",
    "view probe in normals (features / pixels)",
    "patient test acc",
    "train min",
    "note",
]


def _evaluate(run: Path, external: str) -> tuple[dict, dict]:
    from cxrkit.errors import CxrkitError
    from cxrkit.workflows import evaluate_and_report

    own = run / "evaluation" / "metrics.json"
    if not own.is_file():
        try:
            evaluate_and_report(run, precision="32")
        except CxrkitError as exc:  # e.g. a run trained on a manifest whose rows leave its folder
            print(f"{run}: no patient test figure: {exc}")
    ext = run / "external" / "metrics.json"
    if not ext.is_file():
        evaluate_and_report(
            run, external, by=BY, audit=True, out=run / "external", precision="32", abnormal=["pneumonia"]
        )
    return (json.loads(own.read_text()) if own.is_file() else None), json.loads(ext.read_text())


def _sens(ev: dict, column: str, values: list[str], cls: str) -> dict | None:
    """Sensitivity for ``cls`` in the first present subgroup value (population spellings differ)."""
    groups = ev["subgroups"].get(column, {})
    for v in values:
        if v in groups:
            return {**groups[v]["metrics"].get(f"sensitivity/{cls}", {}), "n": groups[v]["n_images"]}
    return None


def _view_probe(ev: dict) -> str:
    for p in (ev.get("audit") or {}).get("probes", []):
        if p["attribute"] == "view" and p["scope"] == "within normal":
            pixels = p.get("pixel_balanced_accuracy")
            return (
                f"{p['balanced_accuracy']:.3f} / {pixels:.3f}"
                if pixels is not None
                else f"{p['balanced_accuracy']:.3f}"
            )
    return "-"


def _data_name(path: str) -> str:
    """A dataset's folder name (a manifest: its folder's, e.g. a merged ``cxr_nih/manifest.csv``)."""
    p = Path(path)
    return p.parent.name if p.suffix == ".csv" else p.name


def _recipe(run: Path) -> str:
    import yaml

    from cxrkit.training.config import TrainConfig

    config = yaml.safe_load((run / "config.yaml").read_text())
    defaults = TrainConfig(data="x", out="x").to_dict()
    keep = ("data", "aux_classes", "balance", "balance_by", "augment", "input_size", "model", "epochs", "roi", "debias")
    diff = {k: config.get(k) for k in keep if k == "data" or (config.get(k) or None) != (defaults.get(k) or None)}
    data = diff.pop("data")
    names = " + ".join(_data_name(d) for d in (data if isinstance(data, list) else [data]))
    return "; ".join([names, *(f"{k}={v}" for k, v in diff.items())])


def row(run: Path, external: str) -> dict:
    own, ext = _evaluate(run, external)
    card = json.loads((run / "model_card.json").read_text())
    adult = ["adult/normal/{}", "adult (assumed)/normal/{}"]
    trained = card["data"]["path"] if isinstance(card["data"]["path"], list) else [card["data"]["path"]]
    shares = any("nih" in _data_name(p) for p in trained)  # nih/ (or a manifest merged from it) was trained on
    abn = ext.get("abnormal") or {}
    by_view = (abn.get("by") or {}).get("view", {})
    cells = {
        "run": run.name,
        "recipe": _recipe(run),
        "val acc": f"{100 * card['val_metrics'].get('val/acc', float('nan')):.1f}",
        "Hannover COVID": pct_ci(_sens(ext, "population+label", ["adult (assumed)/covid"], "covid"), "-"),
        "adult normal AP": pct_ci(_sens(ext, "population+label+view", [a.format("AP") for a in adult], "normal"), "-"),
        "adult normal PA": pct_ci(_sens(ext, "population+label+view", [a.format("PA") for a in adult], "normal"), "-"),
        "child normal": pct_ci(_sens(ext, "population+label", ["pediatric/normal"], "normal"), "-"),
        "pneumonia AP called normal": pct_ci((by_view.get("AP") or {}).get("called_normal"), "-"),
        "pneumonia PA called normal": pct_ci((by_view.get("PA") or {}).get("called_normal"), "-"),
        "normals flagged other-abnormal": pct_ci(abn.get("normals_flagged"), "-"),
        "AUC not-normal": f"{abn['auc_not_normal']['value']:.3f}" if abn.get("auc_not_normal") else "-",
        "view probe in normals (features / pixels)": _view_probe(ext),
        "patient test acc": pct_ci(own["overall"]["metrics"]["accuracy"], "-") if own else "-",
        "train min": f"{card['training']['wall_seconds'] / 60:.0f}",
        "note": "NIH films of external/ share a hospital with training" if shares else "all of external/ is unseen",
    }
    return {"cells": cells, "evaluation": {"test": str(run / "evaluation"), "external": str(run / "external")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--external", default="../shared/data/external")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "external_recipes")
    ap.add_argument("--title", default="Recipes on val and on external/ (issue 26)")
    ap.add_argument("--note", default="", help="a line shown under the table (e.g. what else ran on the host)")
    args = ap.parse_args()
    import torch  # noqa: F401  (run_meta records the thread count of an imported torch)

    rows = [row(r, args.external) for r in args.runs]
    table = {"title": "Recipes", "columns": HEADER, "rows": [[r["cells"][h] for h in HEADER] for r in rows]}
    save_result(
        args.out,
        {"sources": [r["evaluation"] for r in rows]},
        title=args.title,
        tables=[table],
        markdown=f"{RESEARCH_NOTICE}\n" + (f"\n{args.note}\n" if args.note else ""),
    )
    print(markdown_table(HEADER, table["rows"]))


if __name__ == "__main__":
    main()
