"""Helpers shared by the benches: interleaved rounds, min/median/max, a markdown table, a run's files,
and :func:`save_result`, the one way a bench writes its results file.

This 2-core host is shared and its speed drifts by 2x within minutes, so every bench runs
its variants in interleaved rounds (A B C, B C A, ...) and reports per-round ratios.

A number without its machine cannot be compared with the next one, so every results file
carries ``meta`` (:func:`run_meta`): the command, commit, date, CPU model and flags, thread
count and load. ``bench/render_results.py`` turns the files into the documentation's result
pages; nothing is pasted by hand.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cxrkit._precision import host_cpu

RESULTS = Path(__file__).resolve().parent / "results"


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


def pct_ci(ci: dict | None, missing: str = "n/a") -> str:
    """A metric with its 95% CI as ``"92.9 [88.0, 97.2]"`` (percent); ``missing`` when there is none
    (no CI, no value, or NaN: a class absent from the films scored)."""
    if not ci or ci.get("value") is None or ci["value"] != ci["value"]:
        return missing
    return f"{ci['value'] * 100:.1f} [{ci['lo'] * 100:.1f}, {ci['hi'] * 100:.1f}]"


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


def split_files(run_dir: str | Path, split: str) -> tuple[list[str], list[str]]:
    """(paths, labels) of one split of a run, from its split.csv and the data folder in config.yaml."""
    import yaml

    run_dir = Path(run_dir)
    root = Path(yaml.safe_load((run_dir / "config.yaml").read_text())["data"])
    with open(run_dir / "split.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    return [str(root / r["file"]) for r in rows], [r["label"] for r in rows]


def _commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it; "unknown" outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_meta() -> dict:
    """Where and how a result was measured: what every results file records under ``meta``."""
    host = host_cpu()
    torch = sys.modules.get("torch")  # only when the bench imported it: reading it must not cost an import
    one, five, fifteen = os.getloadavg()
    return {
        "recorded": True,
        "command": command_line(),
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **host,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": [round(one, 2), round(five, 2), round(fifteen, 2)],
        "niceness": os.nice(0),
        "python": platform.python_version(),
        "torch": getattr(torch, "__version__", None),
    }


def save_result(
    path: str | Path,
    data: dict | None = None,
    *,
    title: str | None = None,
    tables: Sequence[dict] = (),
    markdown: str | None = None,
    meta: dict | None = None,
) -> Path:
    """Write one results file (``PATH`` with the suffix ``.json``) atomically, with :func:`run_meta`.

    ``data`` keeps the bench's own fields at the top level (scripts such as ``train_table.py``
    read them); ``title``, ``tables`` (each ``{"title", "columns", "rows"}``), ``markdown`` (text
    shown under the tables) and ``meta`` are what ``render_results.py`` shows.
    Without ``title``, a ``markdown`` that starts with ``# heading`` gives it. ``meta`` replaces
    :func:`run_meta` only for a table derived from other results files (it was not measured here).
    Returns the path.
    """
    path = Path(path).with_suffix(".json")
    if title is None and markdown and markdown.startswith("# "):  # a page written with its own heading
        title, _, markdown = markdown.partition("\n")
        title, markdown = title[2:].strip(), markdown.strip("\n") + "\n"
    if not title:
        raise ValueError(f"{path.name}: a result needs a title")
    for table in tables:
        if set(table) - {"title", "columns", "rows"} or any(len(r) != len(table["columns"]) for r in table["rows"]):
            raise ValueError(f"{path.name}: a table needs title, columns and rows of len(columns) cells")
    doc = {**(data or {}), "title": title, "meta": meta if meta is not None else run_meta()}
    if tables:
        doc["tables"] = [dict(t) for t in tables]
    if markdown is not None:
        doc["markdown"] = markdown
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)
    return path
