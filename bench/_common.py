"""Helpers shared by the benches: interleaved rounds, min/median/max, a markdown table, a run's files.

This 2-core host is shared and its speed drifts by 2x within minutes, so every bench runs
its variants in interleaved rounds (A B C, B C A, ...) and reports per-round ratios.
"""

from __future__ import annotations

import csv
import os
import statistics
from collections.abc import Sequence
from pathlib import Path


def rotations(names: Sequence[str], rounds: int) -> list[list[str]]:
    """``rounds`` orders of ``names``, each shifted by one, so no variant always runs first."""
    return [[names[(r + i) % len(names)] for i in range(len(names))] for r in range(rounds)]


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """'median (min-max)' of ``values``."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def stats(values: Sequence[float]) -> dict:
    return {
        "min": round(min(values), 4),
        "median": round(statistics.median(values), 4),
        "max": round(max(values), 4),
        "all": [round(v, 4) for v in values],
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def load_note() -> str:
    """The load average, which says how far the figures can be trusted on a shared machine."""
    one, five, _ = os.getloadavg()
    return f"load average at the end {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"


def command_line() -> str:
    """How this bench was started, for its results file."""
    import shlex
    import sys

    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])


def host_info() -> dict:
    """CPU model, its vector flags (what makes one host faster than another), cores, thread settings."""
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = sorted(f for f in value.split() if f.startswith(("avx", "amx", "fma", "f16c")))
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
    }


def git_commit() -> str:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def split_files(run_dir: str | Path, split: str) -> tuple[list[str], list[str]]:
    """(paths, labels) of one split of a run, from its split.csv and the data folder in config.yaml."""
    import yaml

    run_dir = Path(run_dir)
    root = Path(yaml.safe_load((run_dir / "config.yaml").read_text())["data"])
    with open(run_dir / "split.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    return [str(root / r["file"]) for r in rows], [r["label"] for r in rows]
