"""report.html of cxr protocols, rendered from a synthetic protocols table (no model needed)."""

from __future__ import annotations

import base64
import html
import io
import re

from PIL import Image

from cxrkit import RESEARCH_NOTICE
from cxrkit.workflows.protocols import add_gaps, main_table, to_html, to_markdown

CLASSES = ["covid", "viral_pneumonia", "normal"]
NAN = float("nan")


def _ci(v):
    return {"value": v, "lo": v - 0.03, "hi": v + 0.02} if v == v else {"value": NAN, "lo": NAN, "hi": NAN}


def _row(name, acc, leaky=False, leaked=0, missing=(), what=None, left_out=None, external=None):
    sens = {f"sensitivity/{c}": _ci(NAN if c in missing else acc) for c in CLASSES}
    row = {
        "protocol": name,
        "what": what or f"the {name} protocol",
        "classes": CLASSES,
        "leaky": leaky,
        "leaked_test_images": leaked,
        "test_missing_classes": list(missing),
        "excluded_images": 0,
        "images": {"train": 70, "val": 15, "test": 15},
        "test": {"n_images": 15, "accuracy": _ci(acc), "macro_f1": _ci(acc - 0.01), **sens},
        "seconds": {"train": 30.0, "total": 90.0},
    }
    if left_out:
        row["left_out"] = {"n_images": left_out, "accuracy": _ci(0.4), **sens}
    if external:
        row["external"] = {"n_images": 40, "accuracy": _ci(external), "data": "/ext"}
    return row


def _table(external=None):
    rows = [
        _row("patient", 0.8, external=external and 0.7),
        _row("image", 0.9, leaky=True, leaked=7, external=external and 0.6),
        _row("lso-normal", 0.2, missing=("covid", "viral_pneumonia"), what="<b>normals</b> & only", left_out=9),
    ]
    return {"format": "cxrkit-protocols/1", "data": "/data/x", "external": external, "rows": add_gaps(rows)}


def _body_rows(page: str) -> list[list[str]]:
    """The cells of every body row of every table, unescaped."""
    return [
        [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)]
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", page)
        if "<td>" in tr
    ]


def test_html_has_every_row_the_leaky_label_missing_classes_and_notice():
    table = _table()
    page = to_html(table)
    assert page.count(RESEARCH_NOTICE) >= 2  # on top and in the footer
    head, rows = main_table(table)
    for r in rows:  # each protocol's row, cell for cell as in protocols.md
        assert r in _body_rows(page)
    image = next(r for r in _body_rows(page) if r[0] == "image")
    assert image[1] == "LEAKY" and image[3] == "7" and image[head.index("gap to patient (pts)")] == "+10.0"
    assert re.search(r'<tr class="warn"><td>image</td>', page)  # leaky rows are highlighted
    assert not re.search(r'<tr class="warn"><td>patient</td>', page)
    assert "no test images of covid, viral_pneumonia" in page
    assert ["lso-normal", "9", "40.0% [37.0, 42.0]", "n/a", "n/a", "20.0% [17.0, 22.0]"] in _body_rows(page)
    assert "<b>normals</b>" not in page and "&lt;b&gt;normals&lt;/b&gt; &amp; only" in page
    assert "3 protocols, 4.5 min wall" in page
    uri = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(uri))).format == "PNG"
    # the Markdown table shows the same cells
    md = to_markdown(table)
    assert "| `image` | **LEAKY** | 70/15/15 | 7 |" in md and "n/a" in md


def test_external_column_only_with_an_external_set():
    assert "external accuracy" not in to_html(_table())
    page = to_html(_table(external="/ext"))
    assert "external accuracy" in page and "external: /ext" in page
    assert next(r for r in _body_rows(page) if r[0] == "image")[-2] == "60.0% [57.0, 62.0]"
