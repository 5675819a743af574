"""Print the README's model comparison from bench/results/train_*.json (bench/train_table.sh).

.venv/bin/python bench/train_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def pct(metric: dict) -> str:
    return f"{100 * metric['value']:.1f} [{100 * metric['lo']:.1f}, {100 * metric['hi']:.1f}]"


def row(r: dict) -> str:
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
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    rows = []
    for path in sorted(RESULTS.glob("train_*.json")):
        r = json.loads(path.read_text())
        if "test" in r:  # results written by bench/train_accuracy.py
            rows.append(row(r))
    print(
        "| model | px | epochs | minutes | accuracy % [95% CI] | covid sens. % | normal sens. % | macro-F1 % "
        "| train img/s: end-to-end / model-only |"
    )
    print("|" + "---|" * 9)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
