"""Issue 29 class 4: CSV output that every reader parses and no spreadsheet runs as a formula."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from cxrkit._io import csv_cell, csv_text
from cxrkit.cli.main import main
from cxrkit.data.prepare import prepare
from cxrkit.data.splits import read_split, split_to_csv

HOSTILE = [
    "cr\rin name.png",
    "lf\nin name.png",
    "=HYPERLINK(1).png",
    "+1.png",
    "-2.png",
    "@SUM(A1).png",
    'q"uote, comma.png',
]


def _unneutralise(cell: str) -> str:
    """What the docs tell a reader: drop the one ' put before a formula prefix."""
    return cell[1:] if cell.startswith("'") and cell[1:2] in ("=", "+", "-", "@", "\t", "\r") else cell


def test_csv_cell_quotes_per_rfc_4180_and_neutralises_formula_prefixes():
    assert csv_cell("a\rb") == '"a\rb"' and csv_cell("a,b") == '"a,b"' and csv_cell('a"b') == '"a""b"'
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("@x") == "'@x" and csv_cell("+x") == "'+x"
    assert csv_cell("-0.5") == "-0.5", "numbers are not formulas"
    assert csv_cell("=x", neutralise=False) == "=x" and csv_cell("plain.png") == "plain.png"


@pytest.mark.parametrize("neutralise", [True, False])
def test_csv_text_round_trips_through_pythons_csv_module(neutralise):
    rows = [["file", "n"], *([name, str(i)] for i, name in enumerate(HOSTILE))]
    back = list(csv.reader(io.StringIO(csv_text(rows, neutralise), newline="")))
    assert len(back) == len(rows), "no row may be split by a CR or LF in a name"
    names = [r[0] for r in back[1:]]
    assert [_unneutralise(n) if neutralise else n for n in names] == HOSTILE
    if neutralise:
        assert not any(n.startswith(("=", "+", "-", "@")) for n in names)


@pytest.fixture
def hostile_scans(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, name in enumerate(HOSTILE):
        if "\n" in name:
            continue  # a LF in a file name: same code path as CR; keep the folder listable
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40), dtype=np.uint8)).save(folder / name)
    return folder


def test_predict_csv_keeps_one_row_per_hostile_file_name_and_no_formulas(tiny_run, hostile_scans, tmp_path):
    out = tmp_path / "p.csv"
    main(["predict", str(tiny_run.run_dir), str(hostile_scans), "--format", "csv", "--out", str(out)])
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    expected = sorted(n for n in HOSTILE if "\n" not in n)
    assert len(rows) == len(expected) and all(r["predicted_class"] for r in rows)
    names = sorted(_unneutralise(r["file"]).rsplit("/", 1)[-1] for r in rows)
    assert names == expected
    assert not any(r["file"].startswith(("=", "+", "-", "@")) for r in rows)


def test_split_csv_with_a_cr_in_a_file_name_reads_back_as_the_same_split(blob_writer, tmp_path):
    data = blob_writer(tmp_path / "data", per_class=6, size=32)
    (data / "covid" / "covid_000.png").rename(data / "covid" / "odd\rname.png")
    (data / "normal" / "normal_000.png").rename(data / "normal" / "=formula.png")
    prep = prepare(data, workers=1, cache_dir=tmp_path / "cache")
    text = split_to_csv(prep.dataset, prep.split)
    assert "=formula.png" in text and "'=" not in text, "split.csv keeps names verbatim: cxrkit reads it back"
    (tmp_path / "split.csv").write_text(text, encoding="utf-8", newline="")
    again = read_split(tmp_path / "split.csv", prep.dataset)
    assert list(again.assignment) == list(prep.split.assignment)
