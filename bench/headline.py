"""The README's headline: today's default and the original's protocol, side by side (issue 35).

One row per evaluated run directory given as ``NAME=RUN[:EVALUATION_DIR]``: the accuracy on the
split its metrics.json says it was scored on, with the 95% CI, the protocol and its leak count
(``protocol.leaked_test_images``: test images whose patient or near-duplicate is in train), the
images, and, for the original's setting, the original's published number beside it. Nothing is
re-measured here: each run is evaluated first with ``cxr evaluate RUN --precision 32`` (and for
external data ``--data ../shared/data/external --out RUN/external``); this reads those files
and records where they came from.

Usage: python bench/headline.py default=runs/default v1=runs/v1 [external=runs/default:runs/default/external]
       [--out bench/results/headline]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import save_result

ORIGINAL = "98.75"  # the master's project: COVID-19 Radiography Database v1, random image split


def _pct(ci: dict) -> str:
    return f"{ci['value'] * 100:.1f} [{ci['lo'] * 100:.1f}, {ci['hi'] * 100:.1f}]"


def row(name: str, spec: str) -> list:
    run, _, ev = spec.partition(":")
    metrics = json.loads((Path(ev or Path(run) / "evaluation") / "metrics.json").read_text())
    card = json.loads((Path(run) / "model_card.json").read_text())
    p, data = metrics["protocol"], metrics["data"]
    if data.get("external"):
        protocol = "another dataset used whole (patients the training never saw; labels that are no class left out)"
    elif p.get("split_by") == "image":
        leaked = p.get("leaked_test_images")
        protocol = f"random image split, LEAKY: {leaked} test images share a patient or a near-copy with train"
    else:
        protocol = f"{p.get('split_by')}-disjoint test split ({p.get('leaked_test_images')} leaked test images)"
    original = f"{ORIGINAL} (the original's claim, same protocol)" if p.get("split_by") == "image" else ""
    return [
        name,
        f"{card['model']['name']}, {card['preprocessing']['input_size']} px",
        protocol,
        data["n_images"],
        _pct(metrics["overall"]["metrics"]["accuracy"]),
        original,
        str(card.get("git_commit")),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN[:EVALUATION_DIR]")
    ap.add_argument("--out", type=Path, default=Path("bench/results/headline"))
    a = ap.parse_args()
    rows = [row(*spec.split("=", 1)) for spec in a.runs]
    save_result(
        a.out,
        {"original": ORIGINAL},
        title="Headline: today's default and the original's protocol",
        tables=[
            {
                "title": "Accuracy with its protocol (95% patient-bootstrap CI where patient ids exist)",
                "columns": ["row", "model", "protocol", "test images", "accuracy %", "the original", "trained at"],
                "rows": rows,
            }
        ],
        markdown="The original's 98.75% was measured on the COVID-19 Radiography Database v1 with a random "
        "image split; the v1 row rebuilds that composition from ../shared/data/cxr (`--config "
        "seed-replication`) and counts the test images it leaks. Every model evaluated in fp32 "
        "(`cxr evaluate RUN --precision 32`).",
    )


if __name__ == "__main__":
    main()
