"""What one request may cost the service, and the gate that bounds how many run at once.

Measured before these limits (issue 12): one legal 6.6 MB 8000x8000 JPEG sent to
``/v1/explain`` took the server to 4.8 GB RSS and it stayed there; three concurrent explains
under a memory cap answered 500. So every request that decodes an image or runs the model
passes through :class:`Gate`: at most ``busy`` at once (decode + model + overlay), on the
gate's own ``busy`` threads, up to ``queue`` more wait at most ``queue_wait_s`` seconds, the
rest get 503 with ``Retry-After``. Own threads, not Starlette's pool of 40: every thread that
runs torch gets its own OpenMP team and allocator cache, so a rotating pool kept growing the
RSS. When the gate falls idle, garbage cycles (matplotlib figures hold MBs of pixels) are
collected and the allocator hands freed memory back to the OS (:func:`release_memory`):
cxrkit raises glibc's trim threshold to 512 MiB for speed (``cxrkit._speed``), so without it
a burst's buffers would stay mapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

from ..data.images import WORK_SIDE
from ..errors import UsageError
from ..explain.overlay import OVERLAY_SIDE
from .responses import HttpError


@dataclass(frozen=True)
class Limits:
    """Per-request bounds; the defaults suit a 2-core, 8 GB machine (``cxr serve --help``)."""

    max_upload_bytes: int = 20_000_000
    # w x h read from the file header before decoding; as the reader's bomb limit: 8000x8000 passes
    max_pixels: int = 64_000_000
    # long side an image is reduced to before any per-pixel work (the model input is 224-512 px)
    work_side: int = WORK_SIDE
    # long side of the image under the CAM overlay: the figure panel is at most 800 px wide
    overlay_side: int = OVERLAY_SIDE
    busy: int = 2
    queue: int = 16
    queue_wait_s: float = 30.0
    # the whole request body must arrive within this (20 MB at 6 Mbit/s)
    body_timeout_s: float = 30.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UsageError(f"serve limit {f.name} must be a positive number, got {value}")


class Overloaded(HttpError):
    """503: every slot busy and the wait ran out (or the queue is full)."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(503, message, {"Retry-After": str(retry_after_s)})


class Gate:
    """An admission semaphore with a bounded queue and a bounded wait (see the module doc)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(limits.busy)
        self._threads = ThreadPoolExecutor(limits.busy, thread_name_prefix="cxr-serve")

    async def run(self, fn, *args):
        """``fn(*args)`` on one of the gate's threads, holding a slot (:meth:`slot`) meanwhile."""
        async with self.slot():
            return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(fn, *args))

    def _refuse(self, why: str) -> Overloaded:
        retry = max(1, math.ceil(self.limits.queue_wait_s / 4))
        return Overloaded(
            f"server busy ({self.running} running, {self.waiting} waiting): {why}; retry in {retry} s", retry
        )

    @contextlib.asynccontextmanager
    async def slot(self):
        """Hold one of the ``busy`` slots for the block; :class:`Overloaded` when none comes."""
        if self.waiting >= self.limits.queue:
            raise self._refuse("the queue is full")
        self.waiting += 1
        try:
            await self._acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()
            if self.running == 0 and self.waiting == 0:
                self._threads.submit(release_memory)

    async def _acquire(self) -> None:
        acquire = asyncio.ensure_future(self._slots.acquire())
        done, _ = await asyncio.wait({acquire}, timeout=self.limits.queue_wait_s)
        if acquire in done:
            return
        acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            if await acquire:  # it got the slot just as the wait ran out: give it back
                self._slots.release()
        raise self._refuse(f"no slot freed within {self.limits.queue_wait_s:g} s")


def release_memory() -> str:
    """Collect garbage cycles, then return freed heap memory to the OS: tcmalloc's
    ReleaseFreeMemory, else glibc's malloc_trim. Returns which allocator was asked."""
    gc.collect()
    libc = ctypes.CDLL(None)
    if hasattr(libc, "MallocExtension_ReleaseFreeMemory"):
        libc.MallocExtension_ReleaseFreeMemory()
        return "tcmalloc"
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
        return "malloc_trim"
    return "none"
