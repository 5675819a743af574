"""Run by test_allocator.py in fresh processes: report the allocator setting where cxrkit runs.

    python probe_worker.py import            # a library user: import cxrkit
    python probe_worker.py serve RUN         # `cxr serve RUN`, stopped where uvicorn would start
    python probe_worker.py loader fork|spawn # a DataLoader worker process (Lightning's workers)
    torchrun --nproc-per-node 2 probe_worker.py ddp   # each DDP process

Each prints one JSON line per process: {"where", "state", "mmapped"}; "mmapped" is whether a
48 MiB malloc got its own mmap (glibc's default behaviour) in that very process.
"""

import json
import os
import sys

import cxrkit  # noqa: F401  (what every user script does first; spawned workers re-import it)
from cxrkit._speed import ALLOCATOR, large_blocks_are_mmapped


def report(where: str) -> str:
    return json.dumps(
        {"where": where, "state": ALLOCATOR["state"], "mmapped": large_blocks_are_mmapped(), "pid": os.getpid()}
    )


class ProbeDataset:
    """A map-style dataset whose one item is the worker process's report."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> str:
        return report("loader worker")


def main(mode: str, *rest: str) -> None:
    if mode == "import":
        print(report("import"))
    elif mode == "serve":
        import uvicorn

        from cxrkit.cli.main import main as cxr

        def stop_here(app) -> None:  # where uvicorn would start serving, in this process
            print(report(f"cxr serve ({type(app).__name__})"))

        uvicorn.run = lambda app, **kw: stop_here(app)
        uvicorn.Server.run = lambda server, *a, **kw: stop_here(server.config.app)
        cxr(["serve", rest[0], "--port", "1"])
    elif mode == "loader":
        from torch.utils.data import DataLoader

        loader = DataLoader(ProbeDataset(), batch_size=None, num_workers=1, multiprocessing_context=rest[0])
        print(next(iter(loader)))
    elif mode == "ddp":
        print(report(f"ddp rank {os.environ['RANK']}"), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
