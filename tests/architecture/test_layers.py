"""The house plan is checked by a machine: import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (requirements-dev.txt)")


def _lint(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_layer_contracts_are_kept():
    res = _lint(ROOT / "src", ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert ", 0 broken" in res.stdout.split("Contracts:")[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, upward",
    [
        ("run/layout.py", "import cxrkit.cli.main"),  # bottom layer reaching the top
        ("inference/predictor.py", "from cxrkit.training import fit"),  # serving reaching training
        ("data/splits.py", "def _f():\n    from cxrkit.models import build_classifier"),  # a function-level import
        ("lungs/locate.py", "from cxrkit.training import fit"),  # the lung ROI sits below training
        ("models/factory.py", "from cxrkit.lungs import segmenter"),  # ... and above models
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    shutil.copytree(ROOT / "src" / "cxrkit", tmp_path / "src" / "cxrkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "cxrkit" / module
    target.write_text(target.read_text() + f"\n\n{upward}\n")
    res = _lint(tmp_path / "src", tmp_path)
    assert res.returncode != 0 and "BROKEN" in res.stdout, res.stdout[-2000:]


def test_lungs_sit_between_training_and_models():
    """Training caches lung-cropped images and inference applies the same crop, so the lung
    segmenter must be importable from both: its layer is below training and above models."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    assert layers.index("training") + 1 == layers.index("lungs") == layers.index("models") - 1
