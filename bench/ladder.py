"""From the original's number to a new hospital: one recipe down a ladder of protocols (issue 36).

The original's 98.75% was measured on the COVID-19 Radiography Database v1 with a random image
split. Each rung below changes what the test set is, one step further from that setting:

  (a) the original's setting: its v1 composition rebuilt from ../shared/data/cxr, random image
      split, the test images that share a patient or a near-copy with train counted;
  (b) all of cxr/, random image split;  (c) a patient-disjoint split;  (d) leave-source-out;
  (e) external/: other hospitals' films, used whole;  (f) site/: a later acquisition of a
      children's hospital the training saw, before any adaptation.

Nothing is measured here: each rung is a run directory evaluated beforehand with the commands
that ``bench/ladder.yaml`` records beside it (every evaluation in fp32, ``--precision 32``).
This reads their metrics.json and model cards: accuracy with its 95% patient-bootstrap CI, the
per-class sensitivities, the leak count, the commit and CPU that trained the model.

Run directories are not kept in git and a rung can take an hour of CPU, so a rung whose run is
absent here keeps its row from the previous results file when its commands are unchanged (the
row names its own commit and CPU, and the page lists such rows): the ladder fills up across
sessions instead of shrinking, and a rung whose recipe changed is measured again.

Usage: python bench/ladder.py [--spec bench/ladder.yaml] [--out bench/results/ladder]
                              [--figure docs/images/ladder.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from _common import pct_ci, save_result

ORIGINAL = "98.75"  # the master's project: Radiography Database v1, random image split
RUNGS = {
    "a": "the original's setting: v1 composition (219 COVID + Kermany normal and viral films), random image split",
    "b": "all of cxr/, random image split",
    "c": "patient-disjoint split (whole patients and their near-copies in one split)",
    "d": "leave-source-out: adult COVID vs adult normal, tested on sources the training never saw",
    "e": "external/: NIH and Hannover films of patients never seen, used whole",
    "f": "site/: a later acquisition's children's films, before adaptation (bacterial films left out)",
}


def _sensitivities(metrics: dict, classes: list[str]) -> str:
    m = metrics["overall"]["metrics"]
    parts = []
    for c in classes:
        ci = m.get(f"sensitivity/{c}")
        if ci and ci.get("value") is not None:
            parts.append(f"{c} {ci['value'] * 100:.1f}")
    return ", ".join(parts)


def _leaks(metrics: dict) -> str:
    if metrics["data"].get("external"):
        return "none (other data)"
    leaked = metrics["protocol"].get("leaked_test_images")
    return "not counted" if leaked is None else str(leaked)


def row(recipe: str, entry: dict) -> list:
    """One rung of one recipe: the run's card and the evaluation's metrics.json, as a table row."""
    run = Path(entry["run"])
    metrics = json.loads(_metrics_path(entry).read_text())
    card = json.loads((run / "model_card.json").read_text())
    host = (card.get("host") or {}).get("cpu_model") or entry.get("trained_on")
    trained_on = host if card.get("host") else f"{host} (session record; the card predates it)"
    rung = entry["rung"]
    original = f"{ORIGINAL} (the original's claim)" if rung == "a" else ""
    return [
        recipe,
        f"({rung}) {RUNGS[rung]}",
        f"{card['model']['name']}, {card['preprocessing']['input_size']} px",
        metrics["data"]["n_images"],
        _leaks(metrics),
        pct_ci(metrics["overall"]["metrics"]["accuracy"]),
        original,
        _sensitivities(metrics, card["classes"]),
        str(card.get("git_commit"))[:10],
        trained_on,
        _commands(entry),
    ]


def _commands(entry: dict) -> str:
    return "<br>".join(f"`{c}`" for c in entry["commands"])


def _metrics_path(entry: dict) -> Path:
    return Path(entry.get("evaluation") or Path(entry["run"]) / "evaluation") / "metrics.json"


def _previous_rows(path: Path) -> dict[tuple[str, str], list]:
    """(recipe, rung letter) -> row of the last results file, for rungs measured before."""
    if not path.is_file():
        return {}
    rows = [r for t in json.loads(path.read_text()).get("tables", []) for r in t["rows"]]
    return {(r[0], r[1][1]): r for r in rows}


def plot(tables: list[dict], path: Path) -> None:
    """Accuracy with its CI per rung, one series per recipe, the original's claim as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    letters = list(RUNGS)
    for i, table in enumerate(tables):
        pts = []
        for r in table["rows"]:
            value, _, ci = r[5].partition(" [")
            if ci:
                lo, hi = (float(x) for x in ci.rstrip("]").split(", "))
                pts.append((letters.index(r[1][1]) + (i - (len(tables) - 1) / 2) * 0.12, float(value), lo, hi))
        if pts:
            x, y, lo, hi = map(list, zip(*pts))
            err = [[v - a for v, a in zip(y, lo)], [b - v for v, b in zip(y, hi)]]
            ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, label=table["title"].split(":")[0])
    ax.axhline(float(ORIGINAL), color="grey", ls="--", lw=1)
    ax.text(len(letters) - 0.5, float(ORIGINAL) + 0.8, f"the original's claim, {ORIGINAL}%", ha="right", fontsize=8)
    ax.set_xticks(range(len(letters)), [f"({k})" for k in letters])
    ax.set_xlabel(
        "(a) original setting, leaky  (b) image split  (c) patients  (d) new source  (e) external/  (f) site/"
    )
    ax.set_ylabel("accuracy %, 95% CI")
    ax.set_ylim(top=102)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("From the original's number to a new hospital (research use only)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", type=Path, default=Path("bench/ladder.yaml"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/ladder"))
    ap.add_argument("--figure", type=Path, default=None, help="also draw the rungs as a PNG here")
    a = ap.parse_args()
    spec = yaml.safe_load(a.spec.read_text())
    before = _previous_rows(a.out.with_suffix(".json"))
    tables, missing, carried = [], [], []
    for recipe in spec["recipes"]:
        rows = []
        for entry in recipe["rungs"]:
            key = (recipe["name"], entry["rung"])
            if (Path(entry["run"]) / "model_card.json").is_file() and _metrics_path(entry).is_file():
                rows.append(row(recipe["name"], entry))
            elif key in before and before[key][-1] == _commands(entry):  # the same rung, measured before
                rows.append(before[key])
                carried.append(f"{key[0]} ({key[1]})")
            else:
                missing.append(f"{key[0]} ({key[1]}): {entry['run']}")  # or its evaluation
        tables.append(
            {
                "title": f"{recipe['name']}: {recipe['what']}",
                "columns": [
                    "recipe",
                    "rung",
                    "model",
                    "test images",
                    "leaked test images",
                    "accuracy %",
                    "the original",
                    "sensitivity %",
                    "trained at",
                    "trained on",
                    "commands",
                ],
                "rows": rows,
            }
        )
    notes = [spec.get("notes", "").strip()]
    if carried:
        notes.append(
            "Kept from the previous results file (the run directory is not here; the row names the commit "
            "and CPU that trained it): " + ", ".join(carried) + "."
        )
    if missing:
        notes.append(
            "Not measured (no run directory; its commands are in bench/ladder.yaml): " + "; ".join(missing) + "."
        )
    if a.figure:
        plot(tables, a.figure)
    save_result(
        a.out,
        {"original": ORIGINAL, "rungs": RUNGS, "spec": spec},
        title="From the original's number to a new hospital",
        tables=tables,
        markdown="\n\n".join(n for n in notes if n),
    )


if __name__ == "__main__":
    main()
