"""Figures for the evaluation report, drawn from the ``metrics.json`` dict (never recomputed).

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, not pyplot: pyplot keeps
a global registry of open figures, which leaks memory and is unsafe from threads (the web
service draws too). Every function returns PNG bytes, and every figure carries the
research-only footer, so a figure copied out of the report still says what it is.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

FOOTER = "For research use only. Not for diagnosis."
DPI = 110
CLASS_RATES = ("sensitivity", "specificity", "ppv", "npv")
WARNED = {"facecolor": "0.82", "edgecolor": "0.3", "hatch": "//"}  # look of a subgroup with a warning


def metric_label(key: str) -> str:
    """``"sensitivity/covid"`` -> ``"sensitivity (covid)"``; ``"macro_f1"`` -> ``"macro-F1"``."""
    name, _, cls = key.partition("/")
    name = {"macro_f1": "macro-F1", "f1": "F1", "ppv": "PPV", "npv": "NPV", "auc": "AUC"}.get(name, name)
    return f"{name} ({cls})" if cls else name


def _literal(text) -> str:
    """Class names and metadata values are shown as typed: a "$" must not start mathtext."""
    return str(text).replace("$", r"\$")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    # Placed just under the axes; bbox_inches="tight" grows the image to include it.
    fig.text(0.5, -0.01, FOOTER, ha="center", va="top", fontsize=7, color="0.4")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    return buf.getvalue()


def is_defined(x) -> bool:
    """A finite number; NaN, None (NaN after a strict JSON round trip) and inf show as "n/a"."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def _ci_field(cis: list[dict | None], key: str) -> np.ndarray:
    return np.array([c[key] if c and is_defined(c[key]) else np.nan for c in cis])


def _ci_bars(ax, pos, cis: list[dict | None], size: float, horizontal: bool = False, **style):
    """Bars at ``pos`` with CI whiskers; an undefined value gets an "n/a" mark, not a zero bar."""
    value, lo, hi = (_ci_field(cis, k) for k in ("value", "lo", "hi"))
    # A percentile CI may sit beside its point estimate; matplotlib refuses negative whiskers.
    err = np.nan_to_num(np.clip([value - lo, hi - value], 0, None))
    length = np.nan_to_num(value)
    if horizontal:
        bars = ax.barh(pos, length, height=size, xerr=err, capsize=3, **style)
    else:
        bars = ax.bar(pos, length, width=size, yerr=err, capsize=3, **style)
    for p in np.asarray(pos)[np.isnan(value)]:
        xy, align = ((0.01, p), {"va": "center"}) if horizontal else ((p, 0.01), {"ha": "center", "rotation": 90})
        ax.text(*xy, "n/a", fontsize=7, color="0.35", **align)
    return bars


def _heatmap(ax, matrix: np.ndarray, classes: list[str], title: str, fmt: str, vmax: float) -> None:
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=vmax)
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=9, color="white" if v > vmax / 2 else "black")
    ticks = range(len(classes))
    labels = [_literal(c) for c in classes]
    ax.set_xticks(ticks, labels, rotation=30, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)


def confusion_png(confusion: dict) -> bytes:
    """Counts beside row-normalised rates: counts show the evidence, rates the per-class recall."""
    classes = confusion["classes"]
    counts = np.asarray(confusion["counts"])
    rates = np.asarray(confusion["row_normalised"], dtype=float)
    fig = _figure(10, 4.4)
    left, right = fig.subplots(1, 2)
    _heatmap(left, counts, classes, "Confusion matrix (counts)", "d", max(counts.max(), 1))
    _heatmap(right, rates, classes, "Row-normalised (share of each true class)", ".2f", 1.0)
    return _png(fig)


def roc_png(roc: dict) -> bytes:
    """One-vs-rest ROC per class; classes without both positives and negatives have no curve."""
    fig = _figure(5.6, 5.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    for cls, curve in roc.items():
        auc = f"{curve['auc']:.3f}" if is_defined(curve["auc"]) else "n/a"
        ax.plot(curve["fpr"], curve["tpr"], lw=1.8, label=f"{_literal(cls)} (AUC {auc})")
    if not roc:
        ax.text(
            0.5,
            0.55,
            "no ROC curve: no class has both\npositive and negative images",
            ha="center",
            va="center",
            color="0.35",
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        title="ROC, one class vs the rest",
    )
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def reliability_png(calibration: dict) -> bytes:
    """Reliability before and after temperature scaling, over the count of images per bin."""
    fig = _figure(6, 6.4)
    curve, hist = fig.subplots(2, 1, height_ratios=[3, 1.3], sharex=True)
    curve.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfect calibration")
    edges = np.asarray(calibration["before"]["reliability"]["bin_edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    labels = {"before": "before", "after": f"after (T={calibration['temperature']:.2f})"}
    for shift, (stage, label) in zip((-0.2, 0.2), labels.items()):
        summary = calibration[stage]
        rel = summary["reliability"]
        conf, acc = np.asarray(rel["confidence"], float), np.asarray(rel["accuracy"], float)
        filled = ~np.isnan(conf) & ~np.isnan(acc)  # empty bins have no point
        ece = f"{summary['ece']:.3f}" if is_defined(summary["ece"]) else "n/a"
        line = curve.plot(conf[filled], acc[filled], marker="o", ms=4, label=f"{label}, ECE {ece}")[0]
        hist.bar(centres + shift * width, rel["count"], width=0.4 * width, color=line.get_color(), label=stage)
    curve.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        ylabel="accuracy in bin",
        title=f"Reliability (temperature fitted on {calibration['fitted_on']})",
    )
    curve.legend(loc="upper left", fontsize=8)
    hist.set(xlabel="predicted confidence (top class)", ylabel="images")
    hist.legend(fontsize=7)
    return _png(fig)


def _ci_barh_png(
    labels: list[str], cis: list[dict | None], warned: list[bool], xlabel: str, title: str, warned_label: str
) -> bytes:
    """One horizontal bar with its CI per label, top to bottom; hatched grey bars are ``warned``."""
    fig = _figure(7, 1.2 + 0.45 * max(len(labels), 1))
    ax = fig.subplots()
    pos = np.arange(len(labels))
    bars = _ci_bars(ax, pos, cis, 0.6, horizontal=True, color="tab:blue")
    for bar, w in zip(bars, warned):
        if w:
            bar.set(**WARNED)
    ax.set_yticks(pos, labels)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.05), xlabel=xlabel, title=title)
    if any(warned):
        ax.legend(handles=[Patch(label=warned_label, **WARNED)], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _png(fig)


def subgroup_png(subgroups: dict, column: str, metric: str = "accuracy") -> bytes:
    """``metric`` with its CI per value of ``column``; hatched grey bars carry a warning."""
    values = list(subgroups)
    return _ci_barh_png(
        [f"{_literal(v)} (n={subgroups[v]['n_images']})" for v in values],
        [subgroups[v]["metrics"].get(metric) for v in values],
        [bool(subgroups[v].get("warning")) for v in values],
        f"{metric_label(metric)}, 95% CI",
        f"{metric_label(metric)} by {_literal(column)}",
        "warning:\nsee the table",
    )


def protocols_png(names: list[str], accuracy: list[dict | None], n_images: list[int], leaky: list[bool]) -> bytes:
    """Test accuracy with its CI per protocol (``cxr protocols``); hatched grey bars are leaky protocols."""
    return _ci_barh_png(
        [f"{_literal(p)} (n={n})" for p, n in zip(names, n_images)],
        accuracy,
        leaky,
        "accuracy on the protocol's own test split, 95% CI",
        "The same recipe under each protocol",
        "LEAKY: test images\nshare a patient or\nnear-duplicate\nwith train",
    )


def metrics_bar_png(overall_metrics: dict, classes: list[str]) -> bytes:
    """Per-class sensitivity, specificity, PPV and NPV with CIs, grouped by class."""
    fig = _figure(max(6.0, 2.2 * len(classes)), 4.2)
    ax = fig.subplots()
    width = 0.8 / len(CLASS_RATES)
    x = np.arange(len(classes))
    for k, rate in enumerate(CLASS_RATES):
        _ci_bars(
            ax,
            x + (k - (len(CLASS_RATES) - 1) / 2) * width,
            [overall_metrics.get(f"{rate}/{c}") for c in classes],
            width,
            label=metric_label(rate),
        )
    ax.set_xticks(x, [_literal(c) for c in classes])
    ax.set_yticks(np.linspace(0, 1, 6))  # the headroom above 1 holds the legend, not a rate
    ax.set(ylim=(0, 1.2), ylabel="rate, 95% CI", title="Per-class rates (one class vs the rest)")
    ax.legend(fontsize=8, ncols=len(CLASS_RATES), loc="upper center")
    return _png(fig)
