"""One row per recipe variant of bench/robust_recipes.sh: the table issue 16 chooses by.

Columns, in the order they are used to choose:
  val acc / macro-F1 (patient protocol's val split: what training selected its checkpoint on),
  lso-adult: balanced accuracy of adult COVID vs adult normal on the held-out sources
  (ieee8023, Actualmed, Figure1; trained on RadDB only), its sensitivities and ECE,
  lso left-out: the same lso-adult model on the images that protocol leaves out of every split
  (1,457: 1,340 pediatric normals of the Guangzhou set, 5 normals and 110 COVID films of
  unknown age, 2 others): balanced accuracy of COVID vs normal on a population it never saw;
  CIs about +-2.5 points on the normals and +-8 on COVID, against +-20 on lso-adult's 28 normals,
  probe: balanced accuracy of a linear probe telling pediatric from adult normals from the
  patient run's features (chance 0.5; the audit's within-normal population probe),
  then, reported and never chosen on: the patient-disjoint test accuracy [95% CI] and its
  adult-only COVID-vs-normal balanced accuracy, and the training minutes of both runs.

Usage: python bench/robust_table.py [RUNS=runs/r16] [OUT=bench/results/robust_recipes]
(rows already in OUT.json whose run directories are gone are kept; see keep_earlier)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cxrkit import RESEARCH_NOTICE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pct_ci, save_result  # noqa: E402


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


# What the flags column shows: recipe keys whose value differs from robust_recipes.sh's base
# (96 px, 4 epochs, full fine-tune at lr 1e-3) or from the config's defaults.
FLAG_KEYS = ("augment", "aux_classes", "debias", "debias_weight", "balance", "contrast", "roi", "roi_blank", "seed")
FLAG_KEYS += ("finetune", "input_size", "epochs", "lr", "weights")
FLAG_BASE = {
    "balance": "loss",
    "contrast": "percentile",
    "roi": "none",
    "finetune": "full",
    "input_size": 96,
    "epochs": 4,
    "lr": 0.001,
}


def flags(config: dict) -> str:
    """``key=value`` for each recipe key set away from the bench base (weights: the run they came from;
    a linear probe on cached features sees no augmentation, whatever ``augment`` says)."""
    out = []
    for k in FLAG_KEYS:
        v = config.get(k)
        if not v or FLAG_BASE.get(k) == v or (k == "debias_weight" and not config.get("debias")):
            continue
        if k == "augment" and config.get("cache_features"):
            v = "none (cached features)"
        if k == "weights":
            v = "/".join(Path(v).parts[-4:-2])  # runs/r16/head96/patient/run/model.safetensors -> head96/patient
        out.append(f"{k}={v}")
    return " ".join(out)


def row(variant: Path) -> dict | None:
    patient = _load(variant / "patient" / "result.json")
    lso = _load(variant / "lso-adult" / "result.json")
    if patient is None and lso is None:
        return None
    if patient is None:  # a variant run under lso-adult only (protocols=lso-adult): no val, probe or test
        patient = {"config": lso["config"], "test": {}, "seconds": {"train": 0}}
    card = _load(variant / "patient" / "run" / "model_card.json") or {}
    audit = (_load(variant / "patient" / "run" / "evaluation" / "metrics.json") or {}).get("audit") or {}
    probe = next(
        (
            p["balanced_accuracy"]
            for p in audit.get("probes", [])
            if p["attribute"] == "population" and p["scope"] == "within normal"
        ),
        None,
    )
    out = {
        "variant": variant.name,
        "flags": flags(patient["config"]),
        "val_acc": card.get("val_metrics", {}).get("val/acc"),
        "val_macro_f1": card.get("val_metrics", {}).get("val/macro_f1"),
        "probe_within_normals": probe,
        "patient_test": patient["test"],
        "adult_only": audit.get("adult_only"),
        "minutes": round((patient["seconds"]["train"] + (lso["seconds"]["train"] if lso else 0)) / 60, 1),
    }
    if lso:
        metrics = _load(variant / "lso-adult" / "run" / "evaluation" / "metrics.json") or {}
        cal = metrics.get("calibration", {})
        out["lso"] = {**_lso_summary(lso["test"], cal), "temperature": cal.get("temperature")}
        if lso.get("left_out"):
            out["lso_left_out"] = _left_out(lso["left_out"])
    tta = _tta(
        val_plain=variant / "patient" / "plain_val",
        val_tta=variant / "patient" / "tta_val",
        lso_tta=variant / "lso-adult" / "tta",
    )
    if tta:
        out["tta"] = tta
    return out


def _lso_summary(metrics: dict, calibration: dict | None) -> dict:
    """The lso-adult cells of a variant or an ensemble from its metrics (sensitivity/covid and
    /normal, each value + CI) and its calibration: balanced accuracy is their mean."""
    sens = [metrics.get(f"sensitivity/{c}") for c in ("covid", "normal")]
    return {
        "balanced_accuracy": sum(x["value"] for x in sens) / 2 if all(sens) else None,
        "sensitivity/covid": sens[0],
        "sensitivity/normal": sens[1],
        "ece_after": ((calibration or {}).get("after") or {}).get("ece"),
    }


def _left_out(metrics: dict) -> dict:
    """lso-adult's left-out images (``cxr protocols``' ``left_out``, or ``cxr evaluate --split
    excluded``): balanced accuracy and the two sensitivities, each value + CI."""
    s = _lso_summary(metrics, None)
    return {"n_images": metrics.get("n_images"), **{k: s[k] for k in s if k != "ece_after"}}


def _tta(**dirs: Path) -> dict:
    """Accuracy and balanced accuracy of each ``cxr evaluate ... --tta --out DIR`` that was run."""
    tta = {}
    for key, folder in dirs.items():
        m = _load(folder / "metrics.json")
        if m:
            mm = m["overall"]["metrics"]
            sens = [mm[k]["value"] for k in mm if k.startswith("sensitivity/")]
            tta[key] = {"accuracy": mm["accuracy"]["value"], "balanced_accuracy": sum(sens) / len(sens)}
    return tta


def tta_markdown(rows: list[dict]) -> str:
    """Plain vs ``--tta`` (cxr evaluate RUN [--split val] --tta --out DIR) where it was run."""
    lines = [
        "| variant or ensemble | val acc plain | val acc --tta | lso-adult bal. acc plain | lso-adult bal. acc --tta |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        t = r.get("tta")
        if not t:
            continue
        lines.append(
            f"| `{r.get('variant') or r['ensemble']}` | {f(t.get('val_plain', {}).get('accuracy'))} "
            f"| {f(t.get('val_tta', {}).get('accuracy'))} | {f((r.get('lso') or {}).get('balanced_accuracy'))} "
            f"| {f(t.get('lso_tta', {}).get('balanced_accuracy'))} |"
        )
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def ensemble_row(ens: Path) -> dict | None:
    """An ensemble scored by ``cxr evaluate ENS/patient --ensemble ... --split val`` and
    ``cxr evaluate ENS/lso --ensemble ...`` (members: the variants' patient and lso-adult runs)."""
    val, lso = (
        _load(ens / "patient" / "evaluation" / "metrics.json"),
        _load(ens / "lso" / "evaluation" / "metrics.json"),
    )
    if not val:
        return None
    vm = val["overall"]["metrics"]
    out = {
        "ensemble": ens.name,
        "members": [
            Path(m["path"]).parent.parent.name
            for m in (_load(ens / "patient" / "ensemble.json") or {}).get("members", [])
        ],
        "val_acc": vm["accuracy"]["value"],
        "val_macro_f1": vm["macro_f1"]["value"],
    }
    if lso:
        out["lso"] = _lso_summary(lso["overall"]["metrics"], lso.get("calibration"))
    if left := _load(ens / "lso" / "excluded" / "metrics.json"):
        out["lso_left_out"] = _left_out({"n_images": left["overall"]["n_images"], **left["overall"]["metrics"]})
    tta = _tta(val_tta=ens / "patient" / "tta_val", lso_tta=ens / "lso" / "tta")
    if tta:
        out["tta"] = {"val_plain": {"accuracy": out["val_acc"]}, **tta}
    return out


def f(x, pct: bool = True) -> str:
    """A table cell: a share as a percentage with one decimal (or a raw value with three), '-' if absent."""
    return "-" if x is None else (f"{100 * x:.1f}" if pct else f"{x:.3f}")


def _lso_cells(r: dict) -> str:
    """The lso-adult columns both tables share: balanced accuracy, both sensitivities, ECE, and
    the balanced accuracy on the protocol's left-out images."""
    lso = r.get("lso") or {}
    return (
        f"| {f(lso.get('balanced_accuracy'))} | {pct_ci(lso.get('sensitivity/covid'), '-')} "
        f"| {pct_ci(lso.get('sensitivity/normal'), '-')} | {f(lso.get('ece_after'), False)} "
        f"| {f((r.get('lso_left_out') or {}).get('balanced_accuracy'))} "
    )


def ensembles_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = [
        "| ensemble | members | val acc | val macro-F1 | lso-adult bal. acc | lso sens. covid "
        "| lso sens. normal | lso ECE | lso left-out bal. acc |",
        "|" + " --- |" * 9,
    ]
    for r in rows:
        lines.append(
            f"| `{r['ensemble']}` | {' + '.join(r['members'])} | {f(r['val_acc'])} | {f(r['val_macro_f1'])} "
            f"{_lso_cells(r)}|"
        )
    return "\n".join(lines) + "\n"


def adult_covid_normal(adult_only: dict | None) -> float | None:
    """Balanced accuracy of COVID vs normal among the patient test split's adults: the mean of the
    two sensitivities. Not the audit's ``balanced_accuracy``, which averages every class present:
    the test splits of seeds 1 and 2 hold 3 adult viral pneumonia films (SARS), whose 0% took a
    third off that mean (e.g. robust_s1_b: 56.4 of it vs 84.6 for COVID vs normal)."""
    sens = (adult_only or {}).get("sensitivity") or {}
    if sens.get("covid") is None or sens.get("normal") is None:
        return None
    return (sens["covid"] + sens["normal"]) / 2


def to_markdown(rows: list[dict]) -> str:
    head = (
        "| variant | flags | val acc | val macro-F1 | lso-adult bal. acc | lso sens. covid | lso sens. normal "
        "| lso ECE | lso left-out bal. acc | probe ped/adult normals | patient test acc [95% CI] "
        "| adult-only covid/normal | train min |"
    )
    lines = [head, "|" + " --- |" * 13]
    for r in rows:
        lines.append(
            f"| `{r['variant']}` | {r['flags']} | {f(r['val_acc'])} | {f(r['val_macro_f1'])} "
            f"{_lso_cells(r)}"
            f"| {f(r['probe_within_normals'], False)} | {pct_ci(r['patient_test'].get('accuracy'), '-')} "
            f"| {f(adult_covid_normal(r['adult_only']))} | {r['minutes']} |"
        )
    return "\n".join(lines) + "\n"


def recipe_key(flags_text: str) -> tuple[str, ...]:
    """The recipe of a row, seed left out (tokens sorted: rows written before the flags column
    was reordered list the same keys in another order)."""
    return tuple(sorted(t for t in flags_text.split() if not t.startswith("seed=")))


def _spread(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    return f"{100 * mean:.1f} ({100 * min(vals):.1f}-{100 * max(vals):.1f})" if len(vals) > 1 else f"{100 * mean:.1f}"


def seeds_markdown(rows: list[dict]) -> str:
    """Recipes run on two or more seeds (other splits): mean (min-max) of val and lso-adult, so a
    difference between recipes can be read against the spread of one recipe over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(recipe_key(r["flags"]), []).append(r)
    lines = [
        "| recipe | runs | val acc mean (min-max) | lso-adult bal. acc mean (min-max) "
        "| lso left-out bal. acc mean (min-max) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, group in sorted(groups.items(), key=lambda kv: kv[0]):
        if len(group) < 2:
            continue
        lso = [(r.get("lso") or {}).get("balanced_accuracy") for r in group]
        names = ", ".join(f"`{r['variant']}`" for r in group)
        left = [(r.get("lso_left_out") or {}).get("balanced_accuracy") for r in group]
        lines.append(
            f"| {' '.join(key)} | {names} | {_spread([r['val_acc'] for r in group])} | {_spread(lso)} "
            f"| {_spread(left)} |"
        )
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def keep_earlier(table: Path, rows: list[dict], ensembles: list[dict]) -> tuple[list[dict], list[dict]]:
    """Add the earlier table's rows whose run directories are not in RUNS (runs are deleted to
    free disk; their measured rows stay): a variant or ensemble found again replaces its old row."""
    earlier = _load(table) or {}
    return _merge(rows, earlier.get("rows", []), "variant"), _merge(ensembles, earlier.get("ensembles", []), "ensemble")


def _merge(new: list[dict], old: list[dict], key: str) -> list[dict]:
    names = {r[key] for r in new}
    earlier = {r[key]: r for r in old}
    for r in new:  # a run retrained to the same numbers keeps the --tta scores of its deleted twin
        was = earlier.get(r[key])
        if was and "tta" in was and "tta" not in r and _same_scores(r, was):
            r["tta"] = was["tta"]
    return sorted(new + [r for r in old if r[key] not in names], key=lambda r: r[key])


def _same_scores(a: dict, b: dict) -> bool:
    lso = [(x.get("lso") or {}).get("balanced_accuracy") for x in (a, b)]
    return a.get("val_acc") == b.get("val_acc") and lso[0] == lso[1]


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/r16")
    dest = Path(sys.argv[2] if len(sys.argv) > 2 else "bench/results/robust_recipes")
    dirs = sorted(p for p in runs.iterdir() if p.is_dir())
    rows = [r for v in dirs if not v.name.startswith("ens_") and (r := row(v))]
    ensembles = [r for v in dirs if v.name.startswith("ens_") and (r := ensemble_row(v))]
    rows, ensembles = keep_earlier(dest.with_suffix(".json"), rows, ensembles)
    text = f"{RESEARCH_NOTICE}\n\n{to_markdown(rows)}"
    if seeds := seeds_markdown(rows):
        text += (
            "\nRecipes over seeds (each seed its own split; a `_rerun` is seed 0 again, with the lung model "
            f"retrained since; `_b`: retrained on an AVX-512 host, lung model retrained again):\n\n{seeds}"
        )
    if tta := tta_markdown(rows + ensembles):
        text += f"\nTest-time augmentation (7 views, `cxrkit.inference.tta`):\n\n{tta}"
    if ensembles:
        text += (
            "\nEnsembles of variants trained on the same split (`cxr evaluate --ensemble`; probabilities "
            "averaged, each after its run's temperature; val, lso-adult and its left-out images):\n\n"
            f"{ensembles_markdown(ensembles)}"
        )
    save_result(
        dest,
        {"notice": RESEARCH_NOTICE, "rows": rows, "ensembles": ensembles},
        title="Recipes against source shortcuts (issue 16): variants, seeds, TTA, ensembles",
        markdown=text,
    )
    print(text)


if __name__ == "__main__":
    main()
