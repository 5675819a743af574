"""The model comparison from bench/results/train_*.json (bench/train_table.sh): printed, and saved as
bench/results/train_table.json (rendered into docs/results/train_table.md).

.venv/bin/python bench/train_table.py

The table is derived, not measured here, so its ``meta`` says so and points to each model's file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def pct(metric: dict) -> str:
    return f"{100 * metric['value']:.1f} [{100 * metric['lo']:.1f}, {100 * metric['hi']:.1f}]"


COLUMNS = [
    "model",
    "px",
    "epochs",
    "minutes",
    "accuracy % [95% CI]",
    "covid sens. %",
    "normal sens. %",
    "macro-F1 %",
    "train img/s: end-to-end / model-only",
]


def row(r: dict) -> list[str]:
    m, t = r["test"]["metrics"], r["throughput_img_s"]
    cells = [
        r["model"],
        str(r["input_size"]),
        str(r["epochs_run"]),
        f"{r['wall_seconds_total'] / 60:.0f}",
        pct(m["accuracy"]),
        pct(m["sensitivity/covid"]),
        pct(m["sensitivity/normal"]),
        pct(m["macro_f1"]),
        f"{t['end_to_end_train']:.0f} / {t['model_only_fwd_bwd']:.0f} ({t['ratio']:.0%})",
    ]
    return cells


def main() -> None:
    rows, sources = [], []
    for path in sorted(RESULTS.glob("train_*.json")):
        r = json.loads(path.read_text())
        if "test" in r:  # results written by bench/train_accuracy.py
            rows.append(row(r))
            sources.append(path.stem)
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    print("\n".join("| " + " | ".join(cells) + " |" for cells in rows))
    note = "derived by bench/train_table.py from " + ", ".join(f"{s}.json" for s in sources)
    save_result(
        RESULTS / "train_table.json",
        {"sources": sources},
        title="Model comparison on the patient-disjoint test split (../shared/data/cxr)",
        tables=[{"title": "test split, 95% patient-bootstrap CIs", "columns": COLUMNS, "rows": rows}],
        markdown="Each model's page says how its run was measured: "
        + ", ".join(f"[{s}]({s}.md)" for s in sources)
        + ".",
        meta={"recorded": False, "note": f"machine not recorded here: {note}"},
    )


if __name__ == "__main__":
    main()
