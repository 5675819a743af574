"""The evaluation report: a short Markdown summary for the terminal and one HTML page.

Both are rendered from the ``metrics.json`` dict alone, so every number shown is a number
that was saved. The HTML page embeds its figures as data URIs and loads nothing (its
Content-Security-Policy forbids it): it opens the same offline, mailed or archived, and
shows no text unescaped, whatever a class name, path or metadata value contains.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Container
from pathlib import Path

from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .plots import confusion_png, is_defined, metric_label, metrics_bar_png, reliability_png, roc_png, subgroup_png
from .protocol import protocol_label

SUMMARY_RATES = ("sensitivity", "specificity", "auc")  # per-class rows of the terminal summary
CALIBRATION_SCORES = ("ece", "nll", "brier")
SUBGROUP_HEADER = ["n images", "accuracy", "macro-F1", "warning"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:1100px;
 margin:0 auto;padding:0 1.2rem 3rem;color:#1d2329;line-height:1.5}
h1{font-size:1.6rem;margin:.6rem 0}h2{border-bottom:2px solid #e3e6ea;padding-bottom:.2rem;margin-top:2.2rem}
.notice{background:#fff3cd;border:2px solid #c98a00;border-radius:6px;padding:.7rem 1rem;font-weight:600;
 margin:1rem 0}
.leaky{color:#8a1c1c;font-weight:600}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.92rem}
th,td{border-bottom:1px solid #e3e6ea;padding:.3rem .8rem;text-align:left;vertical-align:top}
th{background:#f5f6f8}tr.warn td{background:#fdecea}
.cards{display:flex;flex-wrap:wrap;gap:1rem;margin:1rem 0}
.card{border:1px solid #d5d9de;border-radius:8px;padding:.6rem 1rem;min-width:14rem}
.card .label{font-size:.85rem;color:#56606b}.card .value{font-size:1.35rem;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1rem}
figure{margin:.5rem 0}figure img{max-width:100%;height:auto}figcaption{font-size:.85rem;color:#56606b}
.verdict{background:#f5f6f8;border-left:4px solid #56606b;padding:.6rem 1rem}
ul.warnings li{color:#8a1c1c}
footer{margin-top:2.5rem;border-top:1px solid #e3e6ea;font-size:.88rem;color:#56606b}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _number(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if is_defined(x) else "n/a"


def format_ci(key: str, ci: dict | None) -> str:
    """``96.2% [94.8, 97.4]`` for rates, ``0.973 [0.951, 0.990]`` for AUC, "n/a" when undefined."""
    if not ci or not is_defined(ci.get("value")):
        return "n/a"
    scale, unit, digits = (1, "", 3) if key.partition("/")[0] == "auc" else (100, "%", 1)
    value = f"{ci['value'] * scale:.{digits}f}{unit}"
    if not (is_defined(ci.get("lo")) and is_defined(ci.get("hi"))):
        return f"{value} [CI n/a]"
    return f"{value} [{ci['lo'] * scale:.{digits}f}, {ci['hi'] * scale:.{digits}f}]"


def _value_text(v) -> str:
    """Any JSON value of the audit or explain sections as short text."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return _number(v)
    if isinstance(v, list):
        return ", ".join(_value_text(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_value_text(x)}" for k, x in v.items())
    return str(v)


def _ci_basis(bootstrap: dict) -> str:
    return f"{bootstrap['level']:.0%} CI, bootstrap over {bootstrap['resamples']} resamples of {bootstrap['unit']}s"


def _split_keys(metrics: dict) -> tuple[list[str], list[str]]:
    """Flat keys into overall ones (``accuracy``) and per-class names (``sensitivity`` of ``sensitivity/covid``)."""
    overall = [k for k in metrics if "/" not in k]
    per_class = list(dict.fromkeys(k.partition("/")[0] for k in metrics if "/" in k))
    return overall, per_class


def _class_rows(metrics: dict, classes: list[str], names) -> list[list[str]]:
    """One row per metric name, one column per class."""
    return [[metric_label(n), *(format_ci(f"{n}/{c}", metrics.get(f"{n}/{c}")) for c in classes)] for n in names]


def _calibration_rows(calibration: dict) -> list[list[str]]:
    return [[stage, *(_number(calibration[stage][s]) for s in CALIBRATION_SCORES)] for stage in ("before", "after")]


def _subgroup_rows(values: dict) -> list[list[str]]:
    return [
        [
            v,
            str(r["n_images"]),
            format_ci("accuracy", r["metrics"].get("accuracy")),
            format_ci("macro_f1", r["metrics"].get("macro_f1")),
            r.get("warning") or "",
        ]
        for v, r in values.items()
    ]


def subgroup_figure_name(column: str) -> str:
    """Figure (and file stem) of a subgroup column, safe as a file name."""
    return "subgroups_" + re.sub(r"[^A-Za-z0-9_-]+", "_", column)


def make_figures(ev: dict) -> dict[str, bytes]:
    """Every report figure as PNG bytes, by name (the file stem in :func:`write_report`)."""
    overall = ev["overall"]
    figures = {
        "confusion": confusion_png(overall["confusion"]),
        "roc": roc_png(ev["roc"]),
        "reliability": reliability_png(ev["calibration"]),
        "class_metrics": metrics_bar_png(overall["metrics"], ev["run"]["classes"]),
    }
    for column, values in ev["subgroups"].items():
        figures[subgroup_figure_name(column)] = subgroup_png(values, column)
    return figures


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(cell(c) for c in row) + " |" for row in [header, ["---"] * len(header), *rows]]


def headline_protocol(ev: dict) -> str:
    """What stands next to every headline number: the split protocol that produced it."""
    return protocol_label(ev.get("protocol"), ev["data"]["split"]) or f"{ev['data']['split']} split"


def _header_path(path) -> str:
    return " + ".join(path) if isinstance(path, list) else str(path)


def render_markdown(ev: dict) -> str:
    """A short summary for the terminal: headline, per-class rates, calibration, subgroups, warnings."""
    run, data, overall, cal = ev["run"], ev["data"], ev["overall"], ev["calibration"]
    m = overall["metrics"]
    lines = [
        f"# {run['model']} on {_header_path(data['path'])} ({data['split']}, {data['n_images']} images)",
        "",
        f"**{ev['notice']}**",
        "",
        f"**Accuracy {format_ci('accuracy', m.get('accuracy'))}**, "
        f"**macro-F1 {format_ci('macro_f1', m.get('macro_f1'))}** ({headline_protocol(ev)}; "
        f"{_ci_basis(overall['bootstrap'])})",
        "",
    ]
    lines += _md_table(["", *run["classes"]], _class_rows(m, run["classes"], SUMMARY_RATES))
    lines += ["", f"## Calibration (temperature {cal['temperature']:.2f}, fitted on {cal['fitted_on']})", ""]
    lines += _md_table(["", "ECE", "NLL", "Brier"], _calibration_rows(cal))
    for column, values in ev["subgroups"].items():
        lines += ["", f"## Subgroups by {column}", ""]
        lines += _md_table([column, *SUBGROUP_HEADER], _subgroup_rows(values))
    if ev.get("abnormal"):
        abn = ev["abnormal"]
        lines += ["", f"## Abnormal films called normal ({', '.join(abn['labels'])}: {abn['rule']})", ""]
        lines += _md_table(["group", "images", "called normal [95% CI]"], abnormal_rows(abn))
    if ev.get("audit"):
        lines += ["", "## Shortcut audit", "", ev["audit"]["verdict"]]
    if ev["warnings"]:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in ev["warnings"])]
    return "\n".join(lines) + "\n"


def abnormal_rows(abn: dict) -> list[list[str]]:
    """Rows (group, images, called normal with CI) of ``metrics.json["abnormal"]``, all films first."""
    rows = [["all", str(abn["n_images"]), format_ci("called_normal", abn["called_normal"])]]
    for column, values in abn["by"].items():
        rows += [
            [f"{column}={v}", str(r["n_images"]), format_ci("called_normal", r["called_normal"])]
            for v, r in values.items()
        ]
    if abn.get("auc_not_normal"):
        rows.append(
            [
                f"AUC of not-normal vs the {abn['normal_films']} normal films",
                "",
                format_ci("auc", abn["auc_not_normal"]),
            ]
        )
        rows.append(
            [f"called normal at {abn['operating_point']} (diagnostic)", "", format_ci("x", abn["called_normal_at_90"])]
        )
    if abn.get("normals_flagged"):  # the price of the other-abnormal flag, on the same normals
        rows.append(
            [
                f"normal films flagged other-abnormal (of {abn['normal_films']})",
                "",
                format_ci("x", abn["normals_flagged"]),
            ]
        )
    return rows


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _table(header: list[str], rows: list[list[str]], warn_rows: Container[int] = ()) -> str:
    """An escaped table; rows whose index is in ``warn_rows`` are highlighted."""

    def tr(cells: list[str], tag: str, attr: str = "") -> str:
        return f"<tr{attr}>" + "".join(f"<{tag}>{_e(c)}</{tag}>" for c in cells) + "</tr>"

    head = tr(header, "th") if header else ""
    body = "".join(tr(row, "td", ' class="warn"' if i in warn_rows else "") for i, row in enumerate(rows))
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _records_table(records: list[dict]) -> str:
    """Rows of dicts (audit probes, occlusion conditions) as a table with the union of their keys."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    return _table([k.replace("_", " ") for k in keys], [[_value_text(r.get(k)) for k in keys] for r in records])


def _key_value_table(items: dict) -> str:
    return _table([], [[k.replace("_", " "), _value_text(v)] for k, v in items.items()])


def _img(png: bytes | None, alt: str, caption: str | None = None) -> str:
    if png is None:
        return ""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{_e(alt)}">{cap}</figure>'


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{''.join(parts)}</section>"


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{_e(text)}</p>"


def _header(ev: dict) -> str:
    run, data = ev["run"], ev["data"]
    info = {
        "run": run["dir"],
        "model": run["model"],
        "classes": run["classes"],
        "weights": run.get("weights_source"),
        "data": ", ".join(data["path"]) if isinstance(data["path"], list) else data["path"],
        "split": data["split"],
        "protocol": headline_protocol(ev),
        "images": data["n_images"],
        "external data": data["external"],
    }
    if data.get("excluded"):
        info["left out (not model classes)"] = data["excluded"]
    if data.get("missing_classes"):
        info["classes with no images"] = data["missing_classes"]
    return f"<h1>Evaluation of {_e(run['model'])}</h1>{_key_value_table(info)}"


def _headline(ev: dict) -> str:
    m, cal = ev["overall"]["metrics"], ev["calibration"]
    where = headline_protocol(ev)
    cards = {
        f"Accuracy ({where})": format_ci("accuracy", m.get("accuracy")),
        f"Macro-F1 ({where})": format_ci("macro_f1", m.get("macro_f1")),
        "ECE after calibration": f"{_number(cal['after']['ece'])} (before {_number(cal['before']['ece'])})",
        "Images": str(ev["overall"]["n_images"]),
    }
    body = "".join(
        f'<div class="card"><div class="label">{_e(k)}</div><div class="value">{_e(v)}</div></div>'
        for k, v in cards.items()
    )
    leaky = (ev.get("protocol") or {}).get("leaky")
    return _section(
        "Headline",
        f'<div class="cards">{body}</div>',
        _p(f"Numbers from the {where}. {_ci_basis(ev['overall']['bootstrap'])}.", "leaky" if leaky else ""),
    )


def _metrics(ev: dict, figures: dict) -> str:
    classes, metrics = ev["run"]["classes"], ev["overall"]["metrics"]
    overall, per_class = _split_keys(metrics)
    return _section(
        "All metrics",
        _table(["metric", "value [95% CI]"], [[metric_label(k), format_ci(k, metrics[k])] for k in overall]),
        _table(["one class vs the rest", *classes], _class_rows(metrics, classes, per_class)),
        _img(figures.get("class_metrics"), "per-class rates with confidence intervals"),
    )


def _calibration(ev: dict, figures: dict) -> str:
    cal = ev["calibration"]
    return _section(
        "Calibration",
        _p(
            f"Temperature {cal['temperature']:.3f}, fitted on the {cal['fitted_on']} split. It rescales "
            "confidences and never changes a predicted class; the metrics above use the scaled "
            "probabilities."
        ),
        _table(["", "ECE", "NLL", "Brier"], _calibration_rows(cal)),
        _img(figures.get("reliability"), "reliability diagram before and after temperature scaling"),
    )


def _subgroups(ev: dict, figures: dict) -> str:
    if not ev["subgroups"]:
        return _section("Subgroups", _p("No subgroup columns were requested."))
    parts = []
    for column, values in ev["subgroups"].items():
        warned = {i for i, r in enumerate(values.values()) if r.get("warning")}
        parts += [
            f"<h3>By {_e(column)}</h3>",
            _table([column, *SUBGROUP_HEADER], _subgroup_rows(values), warned),
            _img(figures.get(subgroup_figure_name(column)), f"accuracy by {column}"),
        ]
    return _section("Subgroups", *parts)


def _audit(audit: dict) -> str:
    parts = [_p(audit["verdict"], "verdict")]
    if audit.get("probes"):
        parts += [
            "<h3>Confound probes (balanced accuracy on the model's features)</h3>",
            _records_table(audit["probes"]),
        ]
    if audit.get("occlusion"):
        parts += ["<h3>Occlusion</h3>", _records_table(audit["occlusion"])]
    if audit.get("adult_only"):
        parts += ["<h3>Adults only</h3>", _key_value_table(audit["adult_only"])]
    return _section("Shortcut audit", *parts)


def _explanations(ev: dict, extra_images: dict[str, bytes]) -> str:
    parts = [f'<div class="grid">{"".join(_img(png, name, name) for name, png in extra_images.items())}</div>']
    lung_vs_border = (ev.get("explain") or {}).get("lung_vs_border")
    if lung_vs_border:
        parts += [
            "<h3>Share of attribution: lungs vs image border</h3>",
            *([_p(f"Lung field: {ev['explain']['lung_region']}")] if ev["explain"].get("lung_region") else []),
            _records_table([{"class": c, **v} for c, v in lung_vs_border.items()]),
        ]
    return _section("Explanations", *parts)


def _how_to_read(ev: dict) -> str:
    boot = ev["overall"]["bootstrap"]
    if boot["unit"] == "patient":
        unit = "resampling patients keeps each patient's images together, so the intervals are not too narrow"
    else:
        unit = (
            "the data has no patient ids, so images were resampled as if independent: where a patient "
            "has several images, the intervals are too narrow"
        )
    text = (
        f"Intervals are {boot['level']:.0%} percentile bootstrap confidence intervals from "
        f"{boot['resamples']} resamples of {boot['unit']}s (seed {boot['seed']}); {unit}. Per-class rates "
        'treat one class against the rest. "n/a" marks a number that is undefined on these images (for '
        "example a class with no images). Highlighted subgroups are too small, or too one-sided, for a "
        "conclusion."
    )
    return f"<footer><h2>How to read this</h2>{_p(text)}{_p(ev['notice'])}</footer>"


def render_html(ev: dict, figures: dict[str, bytes], extra_images: dict[str, bytes] | None = None) -> str:
    """One self-contained page; ``figures`` from :func:`make_figures` (missing ones are left out)."""
    sections = [
        _headline(ev),
        _metrics(ev, figures),
        _section("Confusion matrix", _img(figures.get("confusion"), "confusion matrix")),
        _section("ROC curves", _img(figures.get("roc"), "ROC curves")),
        _calibration(ev, figures),
        _subgroups(ev, figures),
    ]
    if ev.get("abnormal"):
        abn = ev["abnormal"]
        sections.append(
            _section(
                "Abnormal films called normal",
                _p(f"Labels {', '.join(abn['labels'])} are not model classes; rule: {abn['rule']}."),
                _table(["group", "images", "called normal [95% CI]"], abnormal_rows(abn)),
            )
        )
    if ev.get("audit"):
        sections.append(_audit(ev["audit"]))
    if extra_images:
        sections.append(_explanations(ev, extra_images))
    warnings = "".join(f"<li>{_e(w)}</li>" for w in ev["warnings"])
    sections.append(_section("Warnings", f'<ul class="warnings">{warnings}</ul>' if warnings else _p("None.")))
    return html_page(
        f"evaluation: {ev['run']['model']}", ev["notice"], _header(ev) + "".join(sections) + _how_to_read(ev)
    )


def html_page(title: str, notice: str, body: str) -> str:
    """The self-contained page around a report's ``body`` (already escaped HTML), the notice first."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>cxrkit {_e(title)}</title><style>{CSS}</style></head><body>"
        f'<div class="notice" role="note">{_e(notice)}</div>{body}</body></html>\n'
    )


def tables_page(title: str, notice: str, intro: list[str], tables: list[dict], notes: list[str]) -> str:
    """A page of plain tables (e.g. ``cxr protocols``): each ``{"title", "header", "rows"}``, optional
    ``"text"`` (above it), ``"warn_rows"`` (highlighted), ``"figure"`` (PNG bytes) and ``"alt"``;
    ``notes`` go to the footer."""
    sections = [
        _section(
            t["title"],
            _p(t.get("text", "")) if t.get("text") else "",
            _table(t["header"], t["rows"], t.get("warn_rows", ())),
            _img(t.get("figure"), t.get("alt", t["title"])),
        )
        for t in tables
    ]
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    footer = f"<footer><h2>How to read this</h2><ul>{items}</ul>{_p(notice)}</footer>"
    return html_page(title, notice, f"<h1>{_e(title)}</h1>" + "".join(map(_p, intro)) + "".join(sections) + footer)


def write_report(out_dir: str | Path, ev: dict, extra_images: dict[str, bytes] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, every figure and ``report.html`` into ``out_dir``, atomically.

    ``metrics.json`` goes first, so the numbers are saved even if drawing fails. Returns the
    written paths by file name.
    """
    out = Path(out_dir)
    paths = {"metrics.json": atomic_write_json(out / "metrics.json", ev)}
    figures = make_figures(ev)
    for name, png in figures.items():
        paths[f"{name}.png"] = atomic_write_bytes(out / f"{name}.png", png)
    paths["report.html"] = atomic_write_text(out / "report.html", render_html(ev, figures, extra_images))
    return paths
