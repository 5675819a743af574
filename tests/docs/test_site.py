"""The documentation site builds with `mkdocs build --strict`: a broken link or a missing page fails CI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# never --quiet: it hides the warnings that --strict counts, and a broken link would pass
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]
ENV = {"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"}


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MKDOCS, "-f", str(root / "mkdocs.yml"), "-d", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


def test_site_builds_strictly_with_every_page(tmp_path):
    done = _build(ROOT, tmp_path / "site")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    site = tmp_path / "site"
    for page in ("getting-started", "tutorial", "api", "architecture", "results", "results/protocols"):
        assert (site / page / "index.html").is_file(), page
    api = (site / "api" / "index.html").read_text()
    assert "evaluate_and_report" in api and "from_run" in api  # mkdocstrings rendered the docstrings
    assert "make_dataset" in (site / "tutorial" / "index.html").read_text()  # the notebook became a page


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    for name in ("docs", "src", "mkdocs.yml", "CHANGELOG.md"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, copy / name)
    page = copy / "docs" / "serving.md"
    page.write_text(page.read_text() + "\nSee [the old page](no-such-page.md).\n")
    done = _build(copy, tmp_path / "site")
    assert done.returncode != 0 and "no-such-page.md" in done.stdout + done.stderr
