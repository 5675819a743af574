"""Style is checked by the suite, like the layers: `ruff check` and `ruff format --check` on the tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")

pytestmark = pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed (requirements-dev.txt)")


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(args):
    res = subprocess.run(
        [str(RUFF), *args, "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
