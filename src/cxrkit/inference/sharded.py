"""Batch prediction shared out between processes, merged in input order, resumable.

The inputs are cut into numbered chunks. Each process of a Lightning Fabric launch (the
devices of one machine, or several nodes under torchrun or SLURM) predicts its share of the
chunks that are not done yet and writes every finished chunk atomically to ``OUT.parts/``.
Global rank 0 waits for all of them, merges the chunks in input order and removes the parts.
After a crash the same command finds the finished chunks and predicts only the rest; a
``plan.json`` beside them refuses to mix in chunks of another model or input list.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._io import atomic_write_json, text_bytes
from ..errors import CxrkitError
from .predictor import Failure, Prediction, Predictions, Predictor

PLAN_FILE = "plan.json"
DEFAULT_CHUNK = 512


class ShardPlanError(CxrkitError, ValueError):
    """The parts folder belongs to another job; names the folder and what differs."""


@dataclass
class ShardedResult:
    """What one process saw. ``predictions`` is the merged result on global rank 0, else None."""

    predictions: Predictions | None
    chunks: int  # all chunks of the job
    skipped: int  # chunks found done by an earlier, interrupted run
    predicted: int  # chunks this process predicted


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def launch(accelerator: str = "auto", devices: int | str = 1, num_nodes: int = 1):
    """A launched Fabric: processes started here (Lightning's launcher) or found (torchrun, SLURM)."""
    from lightning.fabric import Fabric

    many = num_nodes > 1 or str(devices) not in ("1", "auto")
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy="ddp" if many else "auto")
    fabric.launch()
    return fabric


def predict_sharded(
    predictor: Predictor,
    files: Sequence[Path],
    out: Path,
    fabric,
    chunk_size: int = DEFAULT_CHUNK,
    threshold: float | None = None,
    write: Callable[[Predictions], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> ShardedResult:
    """Predict ``files`` with every process of ``fabric``; rank 0 merges (and calls ``write``).

    ``chunk_size`` is rounded up to whole batches, so every batch holds the same images as in
    a single-process :meth:`Predictor.predict`. ``on_chunk(i)`` runs after chunk ``i`` is saved.
    The parts folder is removed only after ``write`` returned.
    """
    names = [str(f) for f in files]
    size = -(-max(1, chunk_size) // predictor.batch_size) * predictor.batch_size
    n_chunks = -(-len(names) // size)
    folder = parts_dir(Path(out))
    plan = {
        "model_id": predictor.model_id,
        "backend": predictor.backend,
        "precision": predictor.precision,
        "tta": predictor.tta,
        "threshold": predictor.threshold if threshold is None else threshold,
        "chunk_size": size,
        "inputs": len(names),
        "inputs_sha256": hashlib.sha256(text_bytes("\n".join(names))).hexdigest(),
    }
    if fabric.global_rank == 0 and not (folder / PLAN_FILE).is_file():
        atomic_write_json(folder / PLAN_FILE, plan)
    fabric.barrier()
    _check_plan(folder, plan)  # on every rank, so all stop together on a mismatch

    done = {i for i in range(n_chunks) if _chunk_path(folder, i).is_file()}
    todo = [i for i in range(n_chunks) if i not in done]
    mine = todo[fabric.global_rank :: fabric.world_size]
    total = sum(len(names[i * size : (i + 1) * size]) for i in mine)
    finished = 0
    for i in mine:
        part = slice(i * size, (i + 1) * size)
        preds = predictor.predict(list(files[part]), names=names[part], threshold=threshold)
        atomic_write_json(
            _chunk_path(folder, i),
            {
                "chunk": i,
                "results": [r.to_dict() for r in preds.results],
                "errors": [e.to_dict() for e in preds.errors],
            },
        )
        finished += len(names[part])
        if progress:
            progress(finished, total)
        if on_chunk:
            on_chunk(i)
    fabric.barrier()
    if fabric.global_rank != 0:
        return ShardedResult(None, n_chunks, len(done), len(mine))
    merged = Predictions()
    for i in range(n_chunks):
        chunk = json.loads(_chunk_path(folder, i).read_text())
        merged.results += [Prediction(**r) for r in chunk["results"]]
        merged.errors += [Failure(**e) for e in chunk["errors"]]
    if write:
        write(merged)
    shutil.rmtree(folder)
    return ShardedResult(merged, n_chunks, len(done), len(mine))


def _chunk_path(folder: Path, i: int) -> Path:
    return folder / f"chunk-{i:06d}.json"


def _check_plan(folder: Path, plan: dict) -> None:
    found = json.loads((folder / PLAN_FILE).read_text())
    differ = [k for k in plan if found.get(k) != plan[k]]
    if differ:
        raise ShardPlanError(
            f"{folder}: holds the parts of another prediction job (different "
            f"{', '.join(differ)}); remove that folder or choose another --out"
        )
