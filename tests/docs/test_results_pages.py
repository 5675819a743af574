"""Result pages are generated, never pasted: docs/results/ is what bench/render_results.py makes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_results = _module("render_results")
common = _module("_common")


def test_committed_pages_are_what_the_renderer_makes():
    pages = render_results.render()
    committed = {p.name: p.read_text() for p in (ROOT / "docs" / "results").glob("*.md")}
    assert sorted(committed) == sorted(pages), "run: .venv/bin/python bench/render_results.py"
    for name, text in pages.items():
        assert committed[name] == text, f"docs/results/{name} is stale: run .venv/bin/python bench/render_results.py"


def test_every_results_file_has_a_title_and_says_where_it_was_measured():
    for path in sorted((ROOT / "bench" / "results").rglob("*.json")):
        doc = json.loads(path.read_text())
        assert doc.get("title") and isinstance(doc.get("meta"), dict), path.name
        if doc["meta"].get("recorded"):
            assert {"command", "commit", "date", "cpu_model", "cpu_flags", "torch_threads", "load_average"} <= set(
                doc["meta"]
            ), path.name


def test_save_result_records_the_machine_and_a_new_table_renders_without_new_code(tmp_path):
    path = common.save_result(
        tmp_path / "external_by_view",
        {"n": 3},
        title="External evaluation by view",
        tables=[{"title": "accuracy", "columns": ["view", "acc"], "rows": [["PA", 0.91], ["AP", 0.8]]}],
    )
    doc = json.loads(path.read_text())
    meta = doc["meta"]
    assert path.suffix == ".json" and doc["n"] == 3 and meta["recorded"] is True
    assert meta["cpu_model"] and len(meta["load_average"]) == 3 and meta["date"].endswith("Z")
    assert meta["commit"] != ""
    text = render_results.render(tmp_path)["external_by_view.md"]
    assert "# External evaluation by view" in text
    assert "| PA | 0.91 |" in text and "### accuracy" in text
    assert meta["cpu_model"] in text and "machine not recorded" not in text


def test_a_single_top_level_table_and_plain_fields_render(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps({"title": "A", "meta": {"recorded": False}, "columns": ["x", "y|z"], "rows": [[1, 2]]})
    )
    (tmp_path / "b.json").write_text(
        json.dumps({"title": "B", "meta": {"recorded": False}, "speed": {"torch": 12.5}, "all": list(range(20))})
    )
    pages = render_results.render(tmp_path)
    assert "| x | y\\|z |" in pages["a.md"] and "| 1 | 2 |" in pages["a.md"]
    assert "| speed.torch | 12.5 |" in pages["b.md"] and "| all | [20 values] |" in pages["b.md"]
    assert "machine not recorded" in pages["b.md"]
    assert "[A](a.md)" in pages["index.md"] and "archive" not in pages["index.md"]


def test_a_table_with_ragged_rows_or_a_file_without_meta_is_refused(tmp_path):
    with pytest.raises(ValueError, match="rows of len"):
        common.save_result(tmp_path / "x", title="X", tables=[{"title": "t", "columns": ["a"], "rows": [[1, 2]]}])
    (tmp_path / "old.json").write_text(json.dumps({"value": 1}))
    with pytest.raises(SystemExit, match="old.json: needs 'title' and 'meta'"):
        render_results.render(tmp_path)


def test_markdown_heading_gives_the_title(tmp_path):
    path = common.save_result(tmp_path / "m.json", markdown="# Speed\n\nbody\n")
    doc = json.loads(path.read_text())
    assert doc["title"] == "Speed" and doc["markdown"] == "body\n"
