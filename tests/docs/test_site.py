"""The documentation site builds with `mkdocs build --strict`: a broken link or a missing page fails CI."""

from __future__ import annotations

import dataclasses
import re
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
    _check_api_reference(site)


SPHINX_ROLE = re.compile(r":(class|func|meth|mod|attr|data|obj|exc):")


def _check_api_reference(site: Path) -> None:
    """The API page is usable: cross-references rendered (no raw Sphinx roles anywhere), the
    public functions' parameters, TrainConfig's fields with their help, Prediction(s)."""
    from cxrkit.training import TrainConfig

    raw = {p.relative_to(site): SPHINX_ROLE.findall(p.read_text()) for p in site.rglob("*.html")}
    assert not {p: r for p, r in raw.items() if r}, "raw Sphinx roles in the built site"
    api = (site / "api" / "index.html").read_text()
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    missing = [name for name in fields if f'title="cxrkit.training.config.TrainConfig.{name}"' not in api]
    assert not missing, f"TrainConfig fields not on the API page: {missing}"
    assert "Maximum epochs. Default: <code>12</code>" in api  # help text and default of a field
    for path in ("inference.predictor.Predictions", "inference.predictor.Prediction", "training.fit.TrainResult"):
        assert f'id="cxrkit.{path}"' in api, path
    assert "other_abnormal_flag" in api and "predicted_class" in api  # Prediction's fields, described
    assert api.count('<span class="doc-section-title">Parameters:</span>') >= 10  # load, train, evaluate, ...
    assert 'class="autorefs autorefs-internal"' in api  # a role that became a link


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    for name in ("docs", "src", "mkdocs.yml", "CHANGELOG.md"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, copy / name)
    page = copy / "docs" / "serving.md"
    page.write_text(page.read_text() + "\nSee [the old page](no-such-page.md).\n")
    done = _build(copy, tmp_path / "site")
    assert done.returncode != 0 and "no-such-page.md" in done.stdout + done.stderr
