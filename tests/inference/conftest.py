"""Fixtures for inference tests: a copy of the tiny run exported to ONNX, real images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CXR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr"


@pytest.fixture(scope="session")
def onnx_run(tiny_run, tmp_path_factory) -> Path:
    """A private copy of the tiny run, exported with ``cxr export RUN --onnx`` (the CLI path)."""
    from cxrkit.cli.main import main

    run = shutil.copytree(tiny_run.run_dir, tmp_path_factory.mktemp("onnx_run") / "run")
    main(["export", str(run), "--onnx"])
    return run


@pytest.fixture(scope="session")
def real_images() -> list[Path]:
    """Two real radiographs per class from ../shared/data/cxr, read in place."""
    if not CXR.is_dir():
        pytest.skip(f"real data not present: {CXR} (see shared/data/README.md)")
    files = [p for c in ("covid", "viral_pneumonia", "normal") for p in sorted((CXR / c).glob("*.png"))[:2]]
    if not files:
        pytest.skip(f"no PNG images under {CXR}/<class>/")
    return files
