"""Light entry points: `cxr --help` and every `cxr CMD --help` import no torch; serving loads no Lightning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "timm", "onnxruntime", "matplotlib", "sklearn")


def _modules_after(code: str) -> set[str]:
    env = {**os.environ, "CXR_NO_TCMALLOC": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _commands() -> list[list[str]]:
    from cxrkit.cli.main import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    cmds = [[]]
    for name, parser in sub.items():
        nested = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        cmds += [[name, child] for child in nested[0].choices] if nested else [[name]]
    return cmds


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a) or "cxr")
def test_help_imports_no_torch(argv):
    code = (
        "import contextlib, io\nfrom cxrkit.cli.main import main\n"
        f"with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main({[*argv, '--help']!r})"
    )
    loaded = _modules_after(code)
    assert not loaded & set(HEAVY), f"`cxr {' '.join(argv)} --help` imported {sorted(loaded & set(HEAVY))}"


def test_serve_package_imports_no_lightning():
    loaded = _modules_after("import cxrkit.serve")
    assert "lightning" not in loaded and "lightning.pytorch" not in loaded
