"""Issue 29 class 6: `cxr explain` on a huge film works on a reduced copy, as the service does."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cxrkit.data.images import WORK_SIDE
from cxrkit.explain import image_files as explain_files_module
from cxrkit.explain.overlay import OVERLAY_SIDE

pytestmark = pytest.mark.timeout(600)


def _film(path, shape):
    coarse = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    Image.fromarray(coarse).resize((shape[1], shape[0]), Image.BICUBIC).save(path)
    return path


def test_explain_files_reduces_before_per_pixel_work(tiny_run, tmp_path, monkeypatch):
    import cxrkit
    from cxrkit.explain.cams import Explainer

    predictor = cxrkit.load(tiny_run.run_dir)
    seen = {"to_uint8": [], "overlay": []}
    cls = type(predictor.preprocessing)
    to_uint8 = cls.to_uint8
    monkeypatch.setattr(cls, "to_uint8", lambda self, g: seen["to_uint8"].append(g.shape) or to_uint8(self, g))
    overlay = explain_files_module.overlay_figure
    monkeypatch.setattr(
        explain_files_module,
        "overlay_figure",
        lambda gray, *a, **k: seen["overlay"].append(gray.shape) or overlay(gray, *a, **k),
    )
    image = _film(tmp_path / "tall.png", (4100, 3000))
    result = explain_files_module.explain_files(Explainer(predictor), [image], tmp_path / "out")
    assert len(result.written) == 1 and not result.failures
    assert seen["to_uint8"] == [(WORK_SIDE, round(3000 * WORK_SIDE / 4100))]
    ((h, w),) = seen["overlay"]
    assert h == OVERLAY_SIDE and abs(w - 3000 * OVERLAY_SIDE / 4100) <= 1.5


@pytest.mark.slow
def test_cxr_explain_on_an_8000px_png_stays_under_2_gb(tiny_run, tmp_path):
    """Peak RSS of the whole command (imports included) on a legal 8000x8000 film; it was 4.9 GB."""
    image = _film(tmp_path / "big.png", (8000, 8000))
    code = (
        "import resource, sys\n"
        "from cxrkit.cli.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "finally:\n"
        "    print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, "explain", str(tiny_run.run_dir), str(image), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "CXR_NO_TCMALLOC": "1", "OMP_NUM_THREADS": "2"},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-1500:]
    peak_kb = int(res.stdout.rsplit("MAXRSS_KB", 1)[1].split()[0])
    assert peak_kb < 2 * 1024 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"
    assert (tmp_path / "out" / "big.png").is_file()
