"""The site report's figure and table, drawn from ``site_report.json`` (never recomputed).

The learning curve: for each site label that is a class, the share of its held-out films
called that class, and their mean (balanced accuracy), against the labeled patients per label
the adaptation saw; 0 is the base model. Error bars: 95% patient-bootstrap CIs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from .plots import _figure, _png, is_defined


def curve_series(report: dict) -> dict[str, list[dict | None]]:
    """``{metric key: [{"value", "lo", "hi"} or None per curve step]}`` of the balanced accuracy
    and every ``called_right/<class>``."""
    keys: list[str] = []
    for step in report["learning_curve"]:
        keys += [k for k in step["metrics"] if k.startswith("called_right/") and k not in keys]
    keys.append("balanced_accuracy")
    return {k: [step["metrics"].get(k) for step in report["learning_curve"]] for k in keys}


def series_name(key: str) -> str:
    """``"called_right/normal"`` -> ``"normal called normal"``; the mean -> ``"balanced accuracy"``."""
    if key == "balanced_accuracy":
        return "balanced accuracy"
    label = key.split("/", 1)[1]
    return f"{label} called {label}"


def learning_curve_png(report: dict, path: str | Path) -> Path:
    fig = _figure(6.4, 3.8)
    ax = fig.add_subplot()
    steps = report["learning_curve"]
    x = np.arange(len(steps))
    for j, (key, cis) in enumerate(curve_series(report).items()):
        v = np.array([c["value"] if c and is_defined(c["value"]) else np.nan for c in cis])
        lo = np.array([c["lo"] if c and is_defined(c["lo"]) else np.nan for c in cis])
        hi = np.array([c["hi"] if c and is_defined(c["hi"]) else np.nan for c in cis])
        shift = (j - 1) * 0.06
        label = (
            "balanced accuracy"
            if key == "balanced_accuracy"
            else f"{key.split('/', 1)[1]} called {key.split('/', 1)[1]}"
        )
        style = {"lw": 2.2, "color": "black"} if key == "balanced_accuracy" else {"lw": 1.4}
        ax.errorbar(
            x + shift, v * 100, yerr=[(v - lo) * 100, (hi - v) * 100], marker="o", capsize=3, label=label, **style
        )
    ax.set_xticks(x, [str(s["label"]) for s in steps])
    ax.set_xlabel("labeled site patients per label used for adaptation (0: the base model)")
    ax.set_ylabel("held-out site films, %")
    ax.set_title(f"Adapting to a new site ({report['folds']} patient-disjoint folds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return atomic_write_bytes(Path(path), _png(fig))


def _cell(ci: dict | None) -> str:
    if not ci or not is_defined(ci.get("value")):
        return "n/a"
    return f"{ci['value'] * 100:.1f} [{ci['lo'] * 100:.1f}, {ci['hi'] * 100:.1f}]"


def site_markdown(report: dict) -> str:
    """The learning curve as a Markdown table, then the cost on the base's own test split."""
    series = curve_series(report)
    names = [series_name(k) for k in series]
    lines = [
        "| labeled patients per label | films | " + " | ".join(names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for j, step in enumerate(report["learning_curve"]):
        films = ", ".join(f"{c} {n}" for c, n in step["films"].items())
        lines.append(f"| {step['label']} | {films} | " + " | ".join(_cell(series[k][j]) for k in series) + " |")
    text = "\n".join(lines) + "\n\n" + report["protocol"] + ".\n"
    if report.get("left_out"):
        text += (
            "\nLeft out (no output of the base): "
            + ", ".join(f"{k} ({v})" for k, v in report["left_out"].items())
            + ".\n"
        )
    mapped = {k: v for k, v in report.get("label_map", {}).items() if k != v}
    if mapped:
        text += (
            "\nSite labels trained as another output: " + ", ".join(f"{k} -> {v}" for k, v in mapped.items()) + ".\n"
        )
    final = report.get("adapted_on_all")
    if final:
        b, a = final["base"], final["adapted"]
        text += (
            f"\nOn the base run's own test split ({b['n_images']} films), accuracy: base {_cell(b['accuracy'])}, "
            f"adapted on every site film {_cell(a['accuracy'])} "
            f"({(a['accuracy']['value'] - b['accuracy']['value']) * 100:+.1f} points).\n"
        )
    return text
