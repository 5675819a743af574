"""Peak RSS of ``cxr explain`` on one synthetic 8000x8000 PNG (issue 29 class 6).

    .venv/bin/python bench/explain_memory.py [--server-src OLD/src ...] [--out bench/results/explain_memory.json]

Trains a throwaway resdense_tiny run (64 px, 1 epoch, synthetic blobs: seconds; the model's
size hardly matters, the film's does), writes a smooth 8000x8000 gray PNG (legal: 64 MP is
the decoder's limit) and runs ``cxr explain RUN big.png`` under ``/usr/bin/time -v`` once per
``--src`` folder (default: this checkout's src; pass an older commit's src, from
``git archive COMMIT src | tar -x -C DIR``, to compare). The command runs as users start it
(tcmalloc re-exec when installed). Writes the peaks with command, commit, date and CPU as JSON.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import git_commit, host_info
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from cxrkit._io import atomic_write_json  # noqa: E402


def peak_rss_mb(src: Path, run: Path, image: Path, out: Path) -> tuple[float, float]:
    """(peak RSS MB, wall s) of one ``cxr explain`` with ``src`` on the path."""
    res = subprocess.run(
        [
            "/usr/bin/time",
            "-v",
            sys.executable,
            "-m",
            "cxrkit.cli.main",
            "explain",
            str(run),
            str(image),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(src)},
        timeout=900,
    )
    if res.returncode != 0:
        raise SystemExit(f"cxr explain failed with {src}: {res.stderr[-800:]}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", res.stderr).group(1)
    seconds = sum(float(p) * 60**i for i, p in enumerate(reversed(wall.split(":"))))
    return round(kb / 1024), round(seconds, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, nargs="+", default=[ROOT / "src"], help="src folders to measure")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "explain_memory.json")
    args = ap.parse_args()
    from conftest import write_blob_dataset
    from cxrkit.training import TrainConfig, train

    work = Path(tempfile.mkdtemp(prefix="explain-memory-"))
    data = write_blob_dataset(work / "blobs", per_class=12, size=64)
    config = TrainConfig(
        data=str(data), out=str(work / "run"), model="resdense_tiny", pretrained=False, input_size=64, epochs=1
    )
    run = train(config, progress_bar=False).run_dir
    coarse = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    image = work / "big.png"
    Image.fromarray(coarse).resize((8000, 8000), Image.BICUBIC).save(image)
    results = []
    for i, src in enumerate(args.src):
        mb, wall = peak_rss_mb(src.resolve(), run, image, work / f"out{i}")
        results.append({"src": str(src), "peak_rss_mb": mb, "wall_s": wall})
        print(f"{src}: peak RSS {mb} MB, {wall} s")
    atomic_write_json(
        args.out,
        {
            "command": " ".join([".venv/bin/python", *sys.argv]),
            "commit": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": host_info(),
            "image": "8000x8000 8-bit gray PNG (smooth, synthetic)",
            "model": "resdense_tiny, 64 px input (throwaway run)",
            "target_mb": 2048,
            "results": results,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
    )


if __name__ == "__main__":
    main()
