"""Figures and the report, rendered from a synthetic ``metrics.json`` dict (no model needed)."""

from __future__ import annotations

import copy
import io
import json

import pytest
from PIL import Image

from cxrkit import RESEARCH_NOTICE
from cxrkit.evaluation.plots import confusion_png, metrics_bar_png, reliability_png, roc_png, subgroup_png
from cxrkit.evaluation.report import format_ci, make_figures, render_html, render_markdown, write_report

CLASSES = ["covid", "viral_pneumonia", "normal"]
NAN = float("nan")
SMALL_WARNING = "only 12 images: the CI is too wide to support a conclusion"
VERDICT = "With the lung field hidden the model keeps 71% of its above-chance balanced accuracy: a shortcut risk."


def ci(value, lo, hi):
    return {"value": value, "lo": lo, "hi": hi}


def metrics_for(classes, acc=(0.962, 0.948, 0.974), undefined_class=None):
    """Flat metric keys as evaluate writes them; ``undefined_class`` has no images, so NaN."""
    m = {"accuracy": ci(*acc), "macro_f1": ci(0.951, 0.932, 0.967)}
    for k, c in enumerate(classes):
        for name, base in (
            ("sensitivity", 0.93),
            ("specificity", 0.97),
            ("ppv", 0.9),
            ("npv", 0.98),
            ("f1", 0.92),
            ("auc", 0.99),
        ):
            defined = ci(base - k / 100, base - 0.05, base + 0.01)
            m[f"{name}/{c}"] = ci(NAN, NAN, NAN) if c == undefined_class else defined
    m[f"ppv/{classes[-1]}"] = ci(0.9, NAN, NAN)  # a point estimate whose CI could not be formed
    return m


def reliability(shift):
    return {
        "bin_edges": [i / 10 for i in range(11)],
        "confidence": [NAN, NAN, NAN, 0.36, 0.45, 0.55, 0.66, 0.75, 0.86, 0.97],
        "accuracy": [NAN, NAN, NAN, 0.3 + shift, 0.4, 0.5 + shift, 0.6, 0.7 + shift, 0.85, 0.99],
        "count": [0, 0, 0, 3, 5, 8, 12, 20, 40, 300],
    }


def make_ev(classes=CLASSES, data_path="/data/cxr", audit=True):
    ev = {
        "format": "cxrkit-evaluation/1",
        "notice": RESEARCH_NOTICE,
        "run": {"dir": "/runs/r1", "model": "resnet18", "classes": list(classes), "weights_source": "timm"},
        "data": {
            "path": data_path,
            "split": "test",
            "n_images": 388,
            "excluded": {"other": 4},
            "missing_classes": [],
            "external": False,
        },
        "overall": {
            "n_images": 388,
            "bootstrap": {"resamples": 1000, "unit": "patient", "seed": 0, "level": 0.95},
            "metrics": metrics_for(classes),
            "confusion": {
                "classes": list(classes),
                "counts": [[120, 3, 2], [4, 110, 6], [1, 2, 140]],
                "row_normalised": [[0.96, 0.024, 0.016], [0.0333, 0.9167, 0.05], [0.007, 0.014, 0.979]],
            },
        },
        "roc": {
            c: {"fpr": [0.0, 0.02, 0.1, 1.0], "tpr": [0.0, 0.8, 0.95, 1.0], "auc": 0.97 - k / 100}
            for k, c in enumerate(classes)
        },
        "calibration": {
            "temperature": 1.42,
            "fitted_on": "val",
            "before": {"ece": 0.061, "brier": 0.081, "nll": 0.24, "reliability": reliability(-0.08)},
            "after": {"ece": 0.018, "brier": 0.072, "nll": 0.15, "reliability": reliability(0.0)},
        },
        "subgroups": {
            "population": {
                "adult": {"n_images": 300, "metrics": metrics_for(classes), "warning": None},
                "pediatric": {"n_images": 76, "metrics": metrics_for(classes, (0.88, 0.8, 0.94)), "warning": None},
                "unknown": {
                    "n_images": 12,
                    "warning": SMALL_WARNING,
                    "metrics": metrics_for(classes, (0.75, NAN, NAN), classes[0]),
                },
            },
            "subsource": {
                "A": {"n_images": 200, "metrics": metrics_for(classes), "warning": None},
                "B": {"n_images": 188, "metrics": metrics_for(classes, (NAN, NAN, NAN), classes[1]), "warning": None},
            },
        },
        "warnings": ["left out, not model classes: other (4)", f"population=unknown: {SMALL_WARNING}"],
    }
    if audit:
        ev["audit"] = {
            "verdict": VERDICT,
            "probes": [
                {
                    "attribute": "population",
                    "scope": "all classes",
                    "values": ["adult", "pediatric"],
                    "balanced_accuracy": 0.91,
                    "chance": 0.5,
                    "class_balanced_accuracy": 0.95,
                }
            ],
            "occlusion": [
                {"condition": "original", "accuracy": 0.96, "balanced_accuracy": 0.95},
                {"condition": "lungs hidden", "accuracy": 0.81, "balanced_accuracy": NAN},
            ],
            "adult_only": {"n_images": 300, "accuracy": 0.94, "sensitivity": {"covid": 0.95}},
        }
    return ev


@pytest.fixture(scope="module")
def ev():
    return make_ev()


@pytest.fixture(scope="module")
def figures(ev):
    return make_figures(ev)


@pytest.fixture(scope="module")
def page(ev, figures):
    return render_html(ev, figures)


def assert_png(data: bytes):
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        im.load()
        assert 300 <= im.width <= 2000 and 200 <= im.height <= 2000


def test_every_report_figure_is_a_png(figures):
    assert set(figures) == {
        "confusion",
        "roc",
        "reliability",
        "class_metrics",
        "subgroups_population",
        "subgroups_subsource",
    }
    for png in figures.values():
        assert_png(png)


def test_figures_survive_undefined_numbers_and_odd_names(ev):
    """All-NaN metrics, no ROC curve, empty bins and mathtext-like names still draw."""
    odd = ["a$\\foo$", "b"]
    blank = {"value": NAN, "lo": NAN, "hi": NAN}
    metrics = {f"{r}/{c}": blank for r in ("sensitivity", "specificity", "ppv", "npv") for c in odd}
    empty_bins = {
        "bin_edges": [i / 10 for i in range(11)],
        "confidence": [NAN] * 10,
        "accuracy": [NAN] * 10,
        "count": [0] * 10,
    }
    cal = {
        "temperature": 1.0,
        "fitted_on": "val",
        "before": {"ece": NAN, "reliability": empty_bins},
        "after": {"ece": NAN, "reliability": empty_bins},
    }
    for png in (
        metrics_bar_png(metrics, odd),
        roc_png({}),
        reliability_png(cal),
        confusion_png({"classes": odd, "counts": [[0, 0], [0, 0]], "row_normalised": [[0, 0], [0, 0]]}),
        subgroup_png(
            {"$x$": {"n_images": 3, "metrics": {"accuracy": blank}, "warning": "tiny"}}, "c$o$l", metric="sensitivity/b"
        ),
    ):
        assert_png(png)


def test_html_is_one_self_contained_page(ev, figures, page):
    assert page.startswith("<!DOCTYPE html>")
    assert page.index(RESEARCH_NOTICE) < page.index("<h1>")  # the banner comes first
    assert page.count("data:image/png;base64,") == len(figures)
    assert 'src="http' not in page and "http://" not in page and "https://" not in page
    assert "<script" not in page
    for c in CLASSES:
        assert c in page
    assert "96.2% [94.8, 97.4]" in page  # headline accuracy with its CI
    assert "0.990 [0.940, 1.000]" in page  # AUC as a decimal
    assert "90.0% [CI n/a]" in page and "n/a" in page
    assert SMALL_WARNING in page and 'class="warn"' in page
    assert "1000 resamples of patients" in page and "95%" in page
    by_image = {**ev, "overall": {**ev["overall"], "bootstrap": {**ev["overall"]["bootstrap"], "unit": "image"}}}
    assert "no patient ids" in render_html(by_image, {})


def test_audit_section_only_when_audited(ev, figures, page):
    assert "Shortcut audit" in page and VERDICT in page
    assert "lungs hidden" in page and "balanced accuracy" in page
    for unaudited in (make_ev(audit=False), {**make_ev(audit=False), "audit": None}):
        plain = render_html(unaudited, figures)
        assert "Shortcut audit" not in plain and "lungs hidden" not in plain


def test_explanation_images_are_embedded_with_captions(ev, figures):
    extra = {"covid_example_1": figures["roc"], "normal_example_1": figures["roc"]}
    explained = {
        **ev,
        "explain": {
            "images": {n: f"explain/{n}.png" for n in extra},
            "lung_vs_border": {"covid": {"lung": 0.62, "border": 0.08}},
        },
    }
    page = render_html(explained, figures, extra)
    assert page.count("data:image/png;base64,") == len(figures) + 2
    assert "<figcaption>covid_example_1</figcaption>" in page and "Explanations" in page
    assert "<td>0.620</td><td>0.080</td>" in page
    assert "Explanations" not in render_html(ev, figures)


def test_every_text_is_escaped():
    hostile = "<script>alert(1)</script>"
    ev = make_ev(classes=["covid", hostile, "normal"], data_path=f"/data/{hostile}")
    ev["warnings"].append(hostile)
    page = render_html(ev, {})
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_markdown_summary(ev):
    md = render_markdown(ev)
    assert "Accuracy 96.2% [94.8, 97.4]" in md and "macro-F1 95.1% [93.2, 96.7]" in md
    assert RESEARCH_NOTICE in md
    assert all(c in md for c in CLASSES) and "sensitivity" in md and "specificity" in md
    assert "0.061" in md and "0.018" in md  # ECE before and after
    assert SMALL_WARNING in md and "left out, not model classes: other (4)" in md
    assert VERDICT in md
    assert "audit" not in render_markdown(make_ev(audit=False)).lower()


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("accuracy", ci(0.962, 0.948, 0.974), "96.2% [94.8, 97.4]"),
        ("auc/covid", ci(0.9731, 0.951, 0.99), "0.973 [0.951, 0.990]"),
        ("accuracy", ci(NAN, NAN, NAN), "n/a"),
        ("ppv/covid", ci(0.5, NAN, NAN), "50.0% [CI n/a]"),
        ("accuracy", None, "n/a"),
    ],
)
def test_format_ci(key, value, text):
    assert format_ci(key, value) == text


def test_write_report_writes_every_file_atomically(tmp_path, ev):
    paths = write_report(tmp_path / "out", ev)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert (
        written
        == sorted(paths)
        == sorted(
            [
                "metrics.json",
                "report.html",
                "confusion.png",
                "roc.png",
                "reliability.png",
                "class_metrics.png",
                "subgroups_population.png",
                "subgroups_subsource.png",
            ]
        )
    )
    assert all(paths[name] == tmp_path / "out" / name for name in paths)
    saved = json.loads(paths["metrics.json"].read_text())
    assert saved["overall"]["metrics"]["accuracy"] == ev["overall"]["metrics"]["accuracy"]
    # strict JSON: an undefined metric is written as null, not NaN
    assert saved["subgroups"]["subsource"]["B"]["metrics"]["accuracy"]["value"] is None
    assert "NaN" not in paths["metrics.json"].read_text()
    assert RESEARCH_NOTICE in paths["report.html"].read_text()


def test_ev_is_not_modified(ev, figures):
    before = copy.deepcopy(ev)
    render_html(ev, figures)
    render_markdown(ev)
    assert json.dumps(ev, sort_keys=True) == json.dumps(before, sort_keys=True)
