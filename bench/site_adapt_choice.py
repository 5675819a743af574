"""How the adaptation of ``cxr adapt`` was chosen: one row per variant of bench/site_adapt.sh.

Reads the variants' results files (``bench/results/site_adapt_NAME.json``, written by
``bench/site_adapt.py``) and writes one table: the held-out site folds at "all" labeled patients
(normal and viral films called right, balanced accuracy) and the base's **val** split before and
after adapting on every site film; the choice is made on these two, never on a test split. The
test-split cost is shown for the record. Nothing is re-measured here.

Usage: python bench/site_adapt_choice.py replay anchor both ... [--out bench/results/site_adapt_choice]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import pct_ci, save_result

RESULTS = Path(__file__).resolve().parent / "results"
HELD_OUT = ["normal called normal", "viral called viral", "balanced accuracy"]


def _points(after, before) -> str:
    return f"{(after['value'] - before['value']) * 100:+.1f}"


def _step(r: dict, shots) -> dict | None:
    return next((x["metrics"] for x in r["learning_curve"] if x["shots"] == shots), None)


def _recipe(s: dict, label_map: dict) -> str:
    recipe = f"{s['epochs']} epochs, lr {s['lr']:.0e}, ".replace("e-0", "e-")
    recipe += f"replay {s['replay']} (<= {s['replay_ratio']:g} per site film)" if s["replay"] else "no replay"
    recipe += f", L2-SP {s['anchor']:g}" if s["anchor"] else ""
    recipe += f", site films x{s['site_repeats']}" if s["site_repeats"] > 1 else ""
    recipe += ", site films weighted alike" if s.get("site_weights") == "films" else ""
    recipe += "".join(f", {k} trains {v}" for k, v in sorted(label_map.items()) if k != v)
    dropped = sorted(k for k, v in s.get("label_map", {}).items() if v == "drop")
    return recipe + (f", {', '.join(dropped)} left out" if dropped else "")


def row(name: str, shots="all") -> list | None:
    """The variant at ``shots`` labeled patients per label (None when its curve has no such step);
    the cost columns only for "all" (the model adapted on every film)."""
    r = json.loads((RESULTS / f"site_adapt_{name}.json").read_text())
    s, step = r["settings"], _step(r, shots)
    if step is None:
        return None
    out = [
        name,
        _recipe(s, r["label_map"]),
        f"{r['folds']} ({s['seed']})",
        pct_ci(step.get("called_right/normal")),
        pct_ci(step.get("called_right/viral_pneumonia")),
        pct_ci(step["balanced_accuracy"]),
    ]
    if shots != "all":
        return out
    final = r.get("adapted_on_all")  # absent for a folds-only variant (--no-final)
    cost = [_points(final["adapted"][k], final["base"][k]) for k in ("val_accuracy", "accuracy")] if final else []
    return out + (cost or ["n/a", "n/a"]) + [f"{r['seconds'] / 60:.0f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--out", type=Path, default=RESULTS / "site_adapt_choice")
    a = ap.parse_args()
    metas = {n: json.loads((RESULTS / f"site_adapt_{n}.json").read_text())["meta"] for n in a.variants}
    first = metas[a.variants[0]]
    save_result(
        a.out,
        {"variants": a.variants},
        title="Adapting to a new site: which adaptation (chosen on site folds and the base's val split)",
        tables=[
            {
                "title": "Held-out site patients at all labeled patients, % [95% CI]; cost in points",
                "columns": [
                    "variant",
                    "recipe",
                    "folds (seed)",
                    *HELD_OUT,
                    "base val accuracy change",
                    "base test accuracy change (not chosen on)",
                    "report minutes",
                ],
                "rows": [x for x in (row(n) for n in a.variants) if x],
            },
            {
                "title": "The same at 25 labeled patients per label (variants whose learning curve has that step)",
                "columns": ["variant", "recipe", "folds (seed)", *HELD_OUT],
                "rows": [x for x in (row(n, 25) for n in a.variants) if x],
            },
        ],
        markdown="Derived from the variants' results files, each with its own command, commit and CPU: "
        + ", ".join(f"[{n}](site_adapt_{n}.md) ({metas[n]['cpu_model']})" for n in a.variants)
        + ". The base before adaptation: normal called normal and viral called viral are the 0 rows of those pages. "
        "n/a: a folds-only variant (no model adapted on every film, so no cost measured).",
        meta={**first, "command": "derived: .venv/bin/python bench/site_adapt_choice.py " + " ".join(a.variants)},
    )


if __name__ == "__main__":
    main()
