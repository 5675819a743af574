"""Run under torchrun by test_sharded.py: sharded prediction, optionally crashing rank 1.

torchrun --standalone --nproc-per-node 2 sharded_worker.py RUN DATA OUT.csv [crash|ok]
"""

import os
import sys
from pathlib import Path

from cxrkit.inference import Predictor, find_images
from cxrkit.inference.formats import predictions_csv
from cxrkit.inference.sharded import launch, predict_sharded

run, data, out, mode = sys.argv[1:5]
fabric = launch("cpu", int(os.environ["LOCAL_WORLD_SIZE"]), 1)
files, _, _ = find_images([data])
predictor = Predictor.from_run(run, batch_size=4, precision="32")


def crash_on_rank_one(chunk: int) -> None:
    if mode == "crash" and fabric.global_rank == 1:
        os._exit(17)  # dies like a killed process: no cleanup, no exception handling


result = predict_sharded(
    predictor,
    files,
    Path(out),
    fabric,
    chunk_size=8,
    on_chunk=crash_on_rank_one,
    write=lambda merged: Path(out).write_text(predictions_csv(merged, predictor.classes)),
)
print(
    f"rank {fabric.global_rank}: skipped {result.skipped} of {result.chunks}, predicted {result.predicted}", flush=True
)
