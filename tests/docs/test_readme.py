"""The README is a front door: short, complete in its command table, every number sourced."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TEXT = README.read_text()
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _section(title: str) -> str:
    return TEXT.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table_rows(section: str) -> list[list[str]]:
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| ---")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in rows[1:]]


def test_readme_is_short_and_starts_with_the_two_commands():
    assert README.stat().st_size <= 12 * 1024, f"README.md is {README.stat().st_size} bytes; keep it <= 12 KB"
    assert TEXT.splitlines()[:4] == [
        "```",
        "make demo     # set up .venv, then run the main job on ../shared/data/cxr + nih (or DATA=path)",
        "make test     # set up .venv, then run the test suite",
        "```",
    ]
    assert "For research use only. Not for diagnosis or clinical decisions." in TEXT


def test_every_command_of_cxr_help_is_in_the_command_table():
    from cxrkit.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    table = " ".join(row[0] for row in _table_rows(_section("Commands")))
    missing = [name for name in sub.choices if f"`cxr {name}" not in table]
    assert not missing, f"README command table lacks: {missing}"


def test_every_relative_link_resolves():
    for target in LINK.findall(TEXT):
        if target.startswith(("http://", "https://", "#")):
            continue
        assert (ROOT / target.split("#")[0]).exists(), f"README links to missing {target}"


def _cells(page: str) -> list[str]:
    """Every table cell of a rendered results page, ``%`` signs dropped."""
    rows = [ln.strip().strip("|") for ln in page.splitlines() if ln.startswith("|") and not ln.startswith("| ---")]
    return [c.strip().replace("%", "") for row in rows for c in row.split(" | ")]


def test_every_headline_number_names_its_protocol_and_is_the_exact_cell_of_its_results_page():
    rows = _table_rows(_section("Headline numbers, with their protocols"))
    assert len(rows) >= 3
    for what, number, protocol, source in rows:
        assert protocol, f"{what}: no protocol"
        (target,) = LINK.findall(source)
        assert target.startswith("docs/results/"), f"{what}: link a generated results page, not {target}"
        page = (ROOT / target).read_text()
        assert "machine not recorded" not in page, f"{what}: {target} has no machine recorded; measure it again"
        shown = number.replace("%", "")
        cells = _cells(page)
        # the number as the page's cell (or the start of it: "97.1 img/s (rounds 97, 100, 95)"),
        # or, for a page that states it in prose, the same words verbatim
        found = any(c == shown or c.startswith(shown + " ") for c in cells) or number in page
        assert found, f"{what}: {number!r} is not a cell of {target} (stale or pasted?)"


def test_running_the_tests_names_what_ci_installs_and_why_tests_skip():
    section = _section("Running the tests")
    ci = (ROOT / ".ci" / "run").read_text()
    packages = [p for line in re.findall(r"apt-get install -y -qq ([^>]+)>", ci) for p in line.split()]
    assert packages and all(f"`{p}`" in section for p in packages), packages
    for reason in ("/usr/bin/chromium missing", "/usr/sbin/Orthanc is missing", "real data not present"):
        assert reason in section, reason
